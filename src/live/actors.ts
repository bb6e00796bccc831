/**
 * The inspection bridge: fed by XState's `inspect` option (createActor(machine, { inspect })), it
 * keeps the current picture of every live machine actor — its definition, its state, its recent
 * events — so that a page opened at any time starts from the whole current state, then follows
 * the changes. Actors that are not machines (promises, the socket callback) are not shown.
 */
import type { AnyActorRef, AnyStateMachine, InspectionEvent } from 'xstate';
import { activePaths, stateChart, type StateChart } from './state-chart.js';

export interface ActorEventView {
  /** Unix ms. */
  at: number;
  type: string;
  /** Who sent it (an actor id), when not the actor itself or the outside world. */
  from?: string;
}

export interface ActorView {
  /** Unique for the process: XState's session id. */
  sessionId: string;
  deviceId: string;
  /** The actor's id: `supervisor` for the root, else the id its parent gave it (`connection`, `order-3`). */
  name: string;
  /** The machine's id, which names its chart (`connection`, `order`, `http`). */
  machine: string;
  parent?: string;
  /** active, done, error or stopped. */
  status: string;
  /** Active state paths, parents included (`session`, `session.connecting`). */
  active: string[];
  startedAt: number;
  endedAt?: number;
  events: ActorEventView[];
}

export interface ActorBoardOptions {
  /** Events kept per actor. Default 12. */
  eventsPerActor?: number;
  /** How long an ended order actor stays on view. Default 10 s. */
  keepEndedMs?: number;
}

/** Invocations without an id are named after their state path (`0.order.recording`): its last part says enough. */
const shortId = (id: string) => (/^\d+\./.test(id) ? id.slice(id.lastIndexOf('.') + 1) : id);

/** XState's own events in a few words: `done(recording)`, `after(due)`; others as they are. */
function shortEvent(type: string): string {
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(type);
  if (actor) return `${actor[1]}(${shortId(actor[2]!)})`;
  const after = /^xstate\.after\.([^.]+)\./.exec(type);
  return after ? `after(${after[1]})` : type;
}

const isMachine = (logic: unknown): logic is AnyStateMachine => typeof logic === 'object' && logic !== null && 'root' in logic && 'config' in logic;

export class ActorBoard {
  private readonly actors = new Map<string, ActorView>();
  private readonly refs = new Map<string, AnyActorRef>();
  private readonly charts = new Map<string, StateChart>();
  private readonly listeners = new Set<(actor: ActorView, removed: boolean) => void>();
  private readonly eventsPerActor: number;
  private readonly keepEndedMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: ActorBoardOptions = {}) {
    this.eventsPerActor = options.eventsPerActor ?? 12;
    this.keepEndedMs = options.keepEndedMs ?? 10_000;
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  /** The `inspect` observer for one device's actors. Never throws into XState. */
  inspector(deviceId: string): (event: InspectionEvent) => void {
    return (event) => {
      try {
        this.inspected(deviceId, event);
      } catch {
        // Development tooling must not disturb the machines.
      }
    };
  }

  /** Every chart of a machine seen so far, by machine id. */
  chartList(): StateChart[] {
    return [...this.charts.values()];
  }

  /** The live actors (and recently ended orders), oldest first. */
  list(): ActorView[] {
    return [...this.actors.values()];
  }

  onChange(listener: (actor: ActorView, removed: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.listeners.clear();
  }

  private inspected(deviceId: string, event: InspectionEvent): void {
    if (event.type === '@xstate.actor') {
      const ref = event.actorRef as AnyActorRef & { logic?: unknown };
      if (!isMachine(ref.logic)) return;
      const machine = ref.logic;
      if (!this.charts.has(machine.id)) this.charts.set(machine.id, stateChart(machine));
      const parent = (ref as { _parent?: AnyActorRef })._parent;
      this.refs.set(ref.sessionId, ref);
      this.actors.set(ref.sessionId, {
        sessionId: ref.sessionId,
        deviceId,
        name: parent ? ref.id : machine.id,
        machine: machine.id,
        parent: parent?.sessionId,
        status: 'active',
        active: [],
        startedAt: Date.now(),
        events: [],
      });
      return;
    }
    const view = this.actors.get(event.actorRef.sessionId);
    if (!view) return;
    if (event.type === '@xstate.snapshot') {
      const snapshot = event.snapshot as { value?: unknown; status?: string };
      view.active = activePaths(snapshot.value);
      if (snapshot.status && snapshot.status !== view.status) {
        view.status = snapshot.status;
        if (snapshot.status !== 'active') view.endedAt = Date.now();
      }
      this.changed(view);
    } else if (event.type === '@xstate.event') {
      const source = event.sourceRef as (AnyActorRef & { _parent?: unknown; logic?: { id?: string } }) | undefined;
      const from = !source || source === event.actorRef ? undefined : source._parent ? shortId(source.id) : (source.logic?.id ?? source.id);
      view.events.push({ at: Date.now(), type: shortEvent(event.event.type), from });
      if (view.events.length > this.eventsPerActor) view.events.shift();
      this.changed(view);
    }
  }

  private changed(view: ActorView, removed = false): void {
    for (const l of this.listeners) {
      try {
        l(view, removed);
      } catch {
        // A page's problem is not the board's.
      }
    }
  }

  /**
   * Drops ended actors: orders after keepEndedMs (so the last ones stay visible), others at once.
   * Also catches actors stopped without a last snapshot (their ref says so).
   */
  sweep(now = Date.now()): void {
    for (const view of this.actors.values()) {
      if (view.status === 'active') {
        const status = (this.refs.get(view.sessionId)?.getSnapshot() as { status?: string } | undefined)?.status;
        if (status === undefined || status === 'active') continue;
        view.status = status;
        view.endedAt = now;
        this.changed(view);
        continue;
      }
      if (view.machine !== 'order' || now - (view.endedAt ?? now) > this.keepEndedMs) {
        this.actors.delete(view.sessionId);
        this.refs.delete(view.sessionId);
        this.changed(view, true);
      }
    }
  }
}
