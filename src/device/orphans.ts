import type { InspectionEvent } from 'xstate';

/** What is needed of an actor here (inspection events carry only this much). */
type HasSnapshot = { getSnapshot(): unknown };

/*
 * XState v5 stops a machine that fails but not the actors it invoked (statelyai/xstate#5153): a
 * connection machine that failed would leave its socket actor connected, and the restarted one
 * would open a second socket that fights the first. These stop what a failed machine left
 * running. A child machine's stop stops its own children too. `_stop` is XState's internal
 * stop: the public `stop()` refuses non-root actors.
 */

/** Stops every actor `actor` invoked or spawned (for a machine that failed). */
export function stopChildrenOf(actor: HasSnapshot): void {
  const children = (actor.getSnapshot() as { children?: Record<string, unknown> } | undefined)?.children;
  for (const child of Object.values(children ?? {})) {
    try {
      (child as { _stop?: () => void } | undefined)?._stop?.();
    } catch {
      // Already stopped: nothing left to release.
    }
  }
}

/**
 * As the `inspect` option of a root actor: when any child in the system fails (its parent
 * receives `xstate.error.actor.*` from it), stops what that child left running. The root's own
 * failure reaches its `error` observer instead: call stopChildrenOf there.
 */
export function stopOrphansOf(event: InspectionEvent): void {
  if (event.type !== '@xstate.event' || !event.sourceRef) return;
  if (!event.event.type.startsWith('xstate.error.actor.')) return;
  if ((event.sourceRef.getSnapshot() as { status?: string } | undefined)?.status !== 'error') return;
  stopChildrenOf(event.sourceRef);
}

/** An `inspect` option that stops orphans first, then calls the user's inspector (if any). */
export function withOrphanStop(inspect?: (event: InspectionEvent) => void): (event: InspectionEvent) => void {
  return (event) => {
    stopOrphansOf(event);
    inspect?.(event);
  };
}
