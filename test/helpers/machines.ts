/**
 * Fakes for machine tests: a scripted socket, deferred promises the test settles by hand,
 * and a microtask flush (promise actors resolve on microtasks, not on the simulated clock).
 */
import { fromCallback, fromPromise } from 'xstate';
import type { SocketCommand, SocketInput } from '../../machines/connection.js';
import type { InFrame } from '../../machines/common.js';
import type { SocketEvent } from '../../machines/connection.js';

/** Lets pending promise callbacks (and the XState work they trigger) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

export interface FakeSocket {
  input: SocketInput;
  commands: SocketCommand[];
  stopped: boolean;
  emit(event: SocketEvent): void;
  /** The peer delivers a frame (one read's worth). */
  frame(frame: Partial<InFrame> & { type: number }): void;
}

/** A `socket` actor whose every instance is recorded in `sockets`; it reports SOCKET.SENT for each SEND, as a real one does. */
export function fakeSocketActor(sockets: FakeSocket[], opts: { autoSent?: boolean } = {}) {
  return fromCallback<SocketCommand, SocketInput>(({ input, sendBack, receive }) => {
    const s: FakeSocket = {
      input,
      commands: [],
      stopped: false,
      emit: (e) => sendBack(e),
      frame: (f) => sendBack({ type: 'SOCKET.FRAMES', frames: [{ tid: 0, payload: undefined, ...f }] }),
    };
    sockets.push(s);
    receive((cmd) => {
      s.commands.push(cmd);
      if (cmd.type === 'SEND' && opts.autoSent !== false) {
        sendBack({ type: 'SOCKET.SENT', frames: [{ type: cmd.frame.type, tid: cmd.frame.tid }], bytes: 8 });
      }
    });
    return () => {
      s.stopped = true;
    };
  });
}

/** A promise the test resolves or rejects later; `calls` records each actor input. */
export function manualPromise<I, O>() {
  const calls: { input: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  const logic = fromPromise<O, I>(
    ({ input }) =>
      new Promise<O>((resolve, reject) => {
        calls.push({ input, resolve, reject });
      }),
  );
  return { logic, calls };
}

/** A random source that replays `values` (then repeats the last one). */
export function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}
