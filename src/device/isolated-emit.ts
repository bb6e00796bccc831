/** Event delivery that a listener cannot break: NgttDevice's and NgttConnection's emit(). */
import type { EventEmitter } from 'node:events';

/**
 * Calls every listener of `event` in turn. One that throws is handed to `onThrow` and stops
 * neither the other listeners nor the caller; 'error' with no listener is not thrown.
 */
export function emitIsolated(emitter: EventEmitter, event: string | symbol, args: unknown[], onThrow: (error: unknown) => void): boolean {
  const listeners = emitter.rawListeners(event) as ((...a: unknown[]) => unknown)[];
  for (const listener of listeners) {
    try {
      listener.apply(emitter, args);
    } catch (error) {
      try {
        onThrow(error);
      } catch {
        // Reporting must not throw either.
      }
    }
  }
  return listeners.length > 0;
}
