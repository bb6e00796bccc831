/**
 * The device's supervisor (spec §10): owns the long-lived machines, spawns one actor per order,
 * and routes traffic between NGTT and HTTPS. Parallel regions:
 *
 * ngtt   — disabled (the default) | enabled: the `connection` child, told to CONNECT.
 * upload — the `upload` child (pathpoint data); logs — the `logs` child; baob — the `baob` child
 *   (BAOB sync, machines/baob.ts: it follows the link, so every link that comes up syncs).
 *   Each long-lived child lives in `running` and is supervised the same way: if it fails (an
 *   exception in one of its actions, say), its region goes to `faulted` (tag `faulted`; FAULT
 *   emitted), restarts it after a backoff (1 s, 2 s … 60 s; the count starts over once a child
 *   has run for a minute) with the current link, and emits RECOVERED. Nothing else stops.
 * route  — where orders, logs and data go:
 *   https  (NGTT disabled, or down longer than graceMs): polls orders with `pollOrders` every
 *          pollIntervalMs (polling ⇄ waiting); upload and logs get LINK https.
 *   ngtt   (connected): orders arrive as ORDER frames; upload and logs get LINK ngtt.
 *   grace  (NGTT enabled but not connected, for at most graceMs — also right after start):
 *          upload and logs hold (LINK none); after graceMs → https.
 *   A connection that comes up while a poll is out waits for that poll (its orders count as
 *   delivered); upload and logs let a request in flight finish before obeying a LINK change.
 *   So nothing queued is lost or sent twice by the device when switching.
 * config       — fetching (`fetchConfig`: the HTTP retry machine, always HTTPS) → ready; emits
 *                CONFIG, or CONFIG.REFUSED on a 4xx. REFRESH_CONFIG fetches again.
 * declarations — DECLARE {seq, declarations} → declaring (`declarePathpoints`, retried) → idle;
 *                a newer DECLARE cancels the retries of an older one and is sent next.
 *
 * Orders: one `order` child per order (key `order-N`): per ORDER frame, and per order of a
 * poll response (the server marks each section with its order's id; consecutive sections with
 * one id are one order). An order actor that fails is rejected with the reason (FAULT emitted).
 *
 * Routing of what the children report:
 *   CONNECTION.STATE → up/down bookkeeping (and emitted); CONNECTION.FRAMES: an ORDER → a new
 *     order actor, or REDELIVERED to the one already running that id; DATA_STREAM_CONFIRM/REJECT
 *     → upload (BATCH.ANSWERED, together); the echo of the logs' receipt PING → logs
 *     (LOGS.RECEIPT); any other frame is emitted as FRAME.
 *   TRANSMIT (upload, logs) → SEND on the connection while it is up (else dropped: upload
 *     and logs send again what was not answered).
 *   ORDER.DONE → ORDER_CONFIRM / ORDER_REJECT {reason} with the order's tid, only on the
 *     connection it came in on (same epoch) and only if that is still up; the actor is stopped.
 *   SYNC_BAOB_RESPONSE → baob (BAOB.ANSWER); TRANSMIT from baob as from upload.
 *   BATCH.SETTLED, LOGS.SETTLED, BAOB.SYNCED, ORDER.EXECUTING, FAULT, RECOVERED → emitted.
 *
 * Emitted for the runtime (actor.on): SupervisorEmitted below. The runtime learns everything
 * from these; it never reads state names.
 *
 * Adding a long-lived child (as `baob` was added): name its actor in setup(), add its name to
 * `Child` and a `restart<Name>` delay, give it a region like `logs` (`running` invoking it with
 * onError: childFailed(name), `faulted`: restartAfterBackoff(…)), add it to `linkAll` if it
 * follows the link, and send it what it needs from `connectionState` (e.g. SYNC whenever the
 * state is `authenticated`: after every (re)connect). Talk to it through `check(running.x)`.
 */
import { type ActorRefFrom, type ErrorActorEvent, assign, emit, enqueueActions, fromPromise, not, sendTo, setup, stateIn } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import type { DeviceConfig, PathpointDeclaration } from '../src/protocol/messages.js';
import { type BackoffOptions, type FaultReport, type InFrame, type Link, type Random, type TransmitEvent, DEFAULT_BACKOFF, backoffDelay, errorText, withDefaults } from './common.js';
import { type ConnectionInput, type ConnectionReport, type ConnectionState, connectionMachine } from './connection.js';
import { type BaobReport, type BaobSyncSummary, baobMachine } from './baob.js';
import { type HttpRequestOutput, httpRequestMachine } from './http.js';
import { type LogsReport, type LogsSettledReport, LOGS_RECEIPT_TID, logsMachine } from './logs.js';
import { type OrderDoneReport, type OrderReport, orderIdOf, orderMachine } from './order.js';
import { type SettledBatch, type UploadInput, type UploadReport, answersOf, uploadMachine } from './upload.js';


export interface SupervisorInput {
  /** Use NGTT for orders, logs and data (spec §10: off by default). */
  ngtt?: boolean;
  /** Jitter for every backoff below. */
  random: Random;
  /** How long NGTT may be down before orders, logs and data fall back to HTTPS. Default 60 s. */
  graceMs?: number;
  /** HTTPS order polling interval. Default 30 s. */
  pollIntervalMs?: number;
  /** Backoff of every HTTPS retry, and of restarting a child that failed. */
  retry?: Partial<BackoffOptions>;
  connection?: ConnectionInput['timings'];
  /** The NGTT window of the upload. */
  upload?: { window?: number };
  /** How long the BAOB sync waits for SYNC_BAOB_RESPONSE. */
  baob?: { answerTimeoutMs?: number };
}

/** A live order actor. */
export interface OrderEntry {
  key: string;
  id?: string;
  via: 'ngtt' | 'https';
  tid?: number;
  epoch?: number;
}

type Child = 'connection' | 'upload' | 'logs' | 'baob';

export interface SupervisorContext {
  ngttEnabled: boolean;
  random: Random;
  graceMs: number;
  pollIntervalMs: number;
  retry: BackoffOptions;
  connectionTimings: ConnectionInput['timings'];
  window?: number;
  baobAnswerTimeoutMs?: number;
  /** Where upload and logs send now (a restarted child starts there). */
  link: Link;
  /** The connection is authenticated, and its epoch. */
  ngttUp: boolean;
  epoch: number;
  /** Live order actors. */
  orders: OrderEntry[];
  orderSeq: number;
  /** Declarations waiting to be sent, and the ones being sent. */
  pendingDeclarations?: Declarations;
  declaring?: Declarations;
  /** Restarts in a row per child, and the delay before the next one. */
  restarts: Record<Child, number>;
  restartMs: Record<Child, number>;
}

interface Declarations {
  seq: number;
  declarations: PathpointDeclaration[];
}

/** What the runtime sends the supervisor. */
export type SupervisorCommand =
  /** More values are durably in the spool. */
  | { type: 'DATA' }
  /** More log records are buffered. */
  | { type: 'LOGS' }
  | { type: 'FLUSH' }
  /** `seq` grows with each call; DECLARED / DECLARE.REFUSED name the seq they settle. */
  | { type: 'DECLARE'; seq: number; declarations: PathpointDeclaration[] }
  | { type: 'REFRESH_CONFIG' }
  /** Sync the BAOBs now; BAOB.SYNCED names the newest seq a finished sync covered. */
  | { type: 'BAOB.SYNC'; seq: number }
  /** Flush upload and logs and close NGTT; the runtime stops the actor when it is done. */
  | { type: 'STOP' };

export type SupervisorEvent =
  | SupervisorCommand
  | ConnectionReport
  | UploadReport
  | LogsReport
  | BaobReport
  | OrderReport
  | ErrorActorEvent<unknown, string>;

/** What the supervisor emits for the runtime. */
export type SupervisorEmitted =
  | { type: 'CONNECTION.STATE'; state: ConnectionState; epoch: number; delayMs?: number; reason?: string }
  | { type: 'TRANSPORT'; transport: Link }
  | { type: 'ORDER.RECEIVED'; key: string; id?: string; via: 'ngtt' | 'https' }
  | { type: 'ORDER.EXECUTING'; key: string; id?: string }
  | OrderDoneReport
  | ({ type: 'BATCH.SETTLED' } & SettledBatch)
  | LogsSettledReport
  | { type: 'CONFIG'; config: DeviceConfig }
  | { type: 'CONFIG.REFUSED'; status: number }
  | { type: 'DECLARED'; seq: number }
  | { type: 'DECLARE.REFUSED'; seq: number; status: number }
  | { type: 'FRAME'; frame: InFrame }
  | ({ type: 'BAOB.SYNCED'; seq: number } & BaobSyncSummary)
  | FaultReport;

/**
 * A poll response as orders: the server marks each section with its order's id, so consecutive
 * sections with the same id (or without one) are one order. A payload that is not a list is
 * one (malformed) order, which its actor rejects.
 */
export function splitPolled(payload: unknown): unknown[] {
  if (!Array.isArray(payload)) return [payload];
  const orders: unknown[][] = [];
  let last: unknown = {};
  for (const section of payload) {
    const id = typeof section === 'object' && section !== null ? (section as { id?: unknown }).id : undefined;
    if (orders.length === 0 || id !== last) orders.push([]);
    orders[orders.length - 1].push(section);
    last = id;
  }
  return orders;
}

/**
 * For `check()` in enqueueActions: the child is there to be talked to (not restarting; the
 * connection: NGTT on). Sending to a child that is not there would fail the supervisor.
 * (Typed loosely: setup() cannot type its own guards inside its actions.)
 */
const running = {
  connection: stateIn({ ngtt: { enabled: 'running' } }),
  upload: stateIn({ upload: 'running' }),
  logs: stateIn({ logs: 'running' }),
  baob: stateIn({ baob: 'running' }),
} as unknown as Record<Child, never>;

/*
 * A long-lived child is supervised the same way in each of its regions: `running` invokes it
 * (onError → `faulted`, and after a minute without failing its restart count starts over);
 * `faulted` restarts it after its backoff delay.
 */
const childFailed = (child: Child) => ({
  target: 'faulted' as const,
  actions: { type: 'childFailed' as const, params: ({ event }: { event: { error?: unknown } }) => ({ child, error: event.error }) },
});
const stableAfterAMinute = (child: Child) => ({ stable: { actions: { type: 'childStable' as const, params: child } } });
const restartAfterBackoff = <D extends 'restartConnection' | 'restartUpload' | 'restartLogs' | 'restartBaob'>(child: Child, delay: D) => ({
  tags: ['faulted'],
  after: { [delay]: 'running' } as Record<D, 'running'>,
  exit: { type: 'childRestarted' as const, params: child },
});

/** An error event's child id ('xstate.error.actor.order-3' → 'order-3'). */
const childOf = (type: string) => type.slice('xstate.error.actor.'.length);

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    emitted: {} as SupervisorEmitted,
  },
  actors: {
    connection: connectionMachine,
    upload: uploadMachine,
    logs: logsMachine,
    baob: baobMachine,
    order: orderMachine,
    /** POST /v1/device/orders: resolves the decoded answer (a list of sections); rejects on any failure. */
    pollOrders: fromPromise<unknown, void>(async () => {
      throw new Error('supervisor: provide the `pollOrders` actor');
    }),
    /** GET /v1/device with retries: the HTTP retry machine (machines/http.ts `retrying`). */
    fetchConfig: httpRequestMachine,
    /** PUT /v1/device/pathpoints {declarations} with retries (machines/http.ts `retrying`). */
    declarePathpoints: httpRequestMachine,
  },
  actions: {
    /** Tell upload and logs where to send; remember it for restarts; tell the runtime. */
    linkAll: enqueueActions(({ enqueue, check }, link: Link) => {
      enqueue.assign({ link });
      if (check(running.upload)) enqueue.sendTo('upload', { type: 'LINK', link });
      if (check(running.logs)) enqueue.sendTo('logs', { type: 'LINK', link });
      if (check(running.baob)) enqueue.sendTo('baob', { type: 'LINK', link });
      enqueue.emit({ type: 'TRANSPORT', transport: link });
    }),
    toUpload: enqueueActions(({ enqueue, check }, event: { type: 'DATA' } | { type: 'FLUSH' }) => {
      if (check(running.upload)) enqueue.sendTo('upload', event);
    }),
    toLogs: enqueueActions(({ enqueue, check }, event: { type: 'LOGS' } | { type: 'FLUSH' }) => {
      if (check(running.logs)) enqueue.sendTo('logs', event);
    }),
    /** Bookkeeping of the connection's state; the runtime hears of it too. */
    connectionState: enqueueActions(({ enqueue }, report: Extract<ConnectionReport, { type: 'CONNECTION.STATE' }>) => {
      const up = report.state === 'authenticated';
      enqueue.assign({ ngttUp: up, epoch: report.epoch });
      enqueue.emit(report);
    }),
    /**
     * Frames from the connection, in order: an ORDER is a redelivery of an order still running or
     * a new order actor; DATA_STREAM answers go to the upload together; others to the runtime.
     */
    routeFrames: enqueueActions(({ context, enqueue, check }, report: { epoch: number; frames: InFrame[] }) => {
      let seq = context.orderSeq;
      let orders = context.orders;
      for (const frame of report.frames) {
        if (frame.type === FrameType.ORDER) {
          const id = orderIdOf(frame.payload);
          const live = id === undefined ? undefined : orders.find((o) => o.id === id && o.via === 'ngtt');
          if (live) {
            enqueue.sendTo(live.key, { type: 'REDELIVERED', tid: frame.tid, epoch: report.epoch });
            orders = orders.map((o) => (o === live ? { ...o, tid: frame.tid, epoch: report.epoch } : o));
            continue;
          }
          const key = `order-${++seq}`;
          enqueue.spawnChild('order', { id: key, input: { key, via: 'ngtt', tid: frame.tid, epoch: report.epoch, payload: frame.payload } });
          orders = [...orders, { key, id, via: 'ngtt', tid: frame.tid, epoch: report.epoch }];
          enqueue.emit({ type: 'ORDER.RECEIVED', key, id, via: 'ngtt' });
        } else if (frame.type === FrameType.PING && frame.tid === LOGS_RECEIPT_TID) {
          if (check(running.logs)) enqueue.sendTo('logs', { type: 'LOGS.RECEIPT' });
        } else if (frame.type === FrameType.SYNC_BAOB_RESPONSE) {
          if (check(running.baob)) enqueue.sendTo('baob', { type: 'BAOB.ANSWER', tid: frame.tid, payload: frame.payload });
        } else if (frame.type !== FrameType.DATA_STREAM_CONFIRM && frame.type !== FrameType.DATA_STREAM_REJECT) {
          enqueue.emit({ type: 'FRAME', frame });
        }
      }
      if (orders !== context.orders) enqueue.assign({ orderSeq: seq, orders });
      const answers = answersOf(report.frames);
      if (answers.length && check(running.upload)) enqueue.sendTo('upload', { type: 'BATCH.ANSWERED', answers });
    }),
    /** A poll response: one order actor per order in it. */
    receivePolled: enqueueActions(({ context, enqueue }, { payload }: { payload: unknown }) => {
      let seq = context.orderSeq;
      const orders = [...context.orders];
      for (const order of splitPolled(payload)) {
        const key = `order-${++seq}`;
        const id = orderIdOf(order);
        enqueue.spawnChild('order', { id: key, input: { key, via: 'https', payload: order } });
        orders.push({ key, id, via: 'https' });
        enqueue.emit({ type: 'ORDER.RECEIVED', key, id, via: 'https' });
      }
      enqueue.assign({ orderSeq: seq, orders });
    }),
    /** ORDER.DONE: answer on the connection the order came in on, if it is still up; then forget the actor. */
    orderDone: enqueueActions(({ context, enqueue, check }, done: OrderDoneReport) => {
      if (done.via === 'ngtt' && context.ngttUp && done.epoch === context.epoch && done.tid !== undefined && check(running.connection)) {
        const frame =
          done.outcome === 'acked'
            ? { type: FrameType.ORDER_CONFIRM, tid: done.tid }
            : { type: FrameType.ORDER_REJECT, tid: done.tid, payload: done.reason ? { reason: done.reason } : undefined };
        enqueue.sendTo('connection', { type: 'SEND', frame });
      }
      enqueue.stopChild(done.key);
      enqueue.assign({ orders: context.orders.filter((o) => o.key !== done.key) });
      enqueue.emit(done);
    }),
    stop: enqueueActions(({ enqueue, check }) => {
      if (check(running.upload)) enqueue.sendTo('upload', { type: 'FLUSH' });
      if (check(running.logs)) enqueue.sendTo('logs', { type: 'FLUSH' });
      if (check(running.connection)) enqueue.sendTo('connection', { type: 'CLOSE' });
      // No connection to close (NGTT off, or it is restarting): closed already, as far as anyone waits.
      else enqueue.emit({ type: 'CONNECTION.STATE', state: 'closed', epoch: 0 });
    }),
    /** A long-lived child failed: count, pick the restart delay, tell the runtime. */
    childFailed: enqueueActions(({ context, enqueue }, params: { child: Child; error: unknown }) => {
      const n = context.restarts[params.child] + 1;
      enqueue.assign({
        restarts: { ...context.restarts, [params.child]: n },
        restartMs: { ...context.restartMs, [params.child]: backoffDelay(n, context.retry, context.random) },
      });
      if (params.child === 'connection') {
        enqueue.assign({ ngttUp: false });
        enqueue.emit({ type: 'CONNECTION.STATE', state: 'disconnected', epoch: context.epoch, reason: 'connection machine failed' });
      }
      enqueue.emit({ type: 'FAULT', source: params.child, error: errorText(params.error) });
    }),
    childRestarted: emit((_, child: Child) => ({ type: 'RECOVERED' as const, source: child })),
    childStable: assign(({ context }, child: Child) => ({ restarts: { ...context.restarts, [child]: 0 } })),
    /** An order actor failed (a bug, not the handler: that is a rejection): reject it and say so. */
    orderFailed: enqueueActions(({ context, enqueue, check, event }) => {
      const key = childOf(event.type);
      const order = context.orders.find((o) => o.key === key);
      if (!order) return;
      const error = errorText((event as ErrorActorEvent).error);
      const done: OrderDoneReport = { type: 'ORDER.DONE', key, id: order.id, via: order.via, tid: order.tid, epoch: order.epoch, outcome: 'rejected', reason: `device fault: ${error}`, executed: false };
      if (order.via === 'ngtt' && context.ngttUp && order.epoch === context.epoch && order.tid !== undefined && check(running.connection)) {
        enqueue.sendTo('connection', { type: 'SEND', frame: { type: FrameType.ORDER_REJECT, tid: order.tid, payload: { reason: done.reason } } });
      }
      enqueue.stopChild(key);
      enqueue.assign({ orders: context.orders.filter((o) => o.key !== key) });
      enqueue.emit({ type: 'FAULT', source: 'order', error });
      enqueue.emit(done);
    }),
  },
  guards: {
    ngttEnabled: ({ context }) => context.ngttEnabled,
    ngttUp: ({ context }) => context.ngttUp,
    declarationsPending: ({ context }) => context.pendingDeclarations !== undefined,
    ok: (_, output: HttpRequestOutput) => output.outcome === 'ok',
    refused: (_, output: HttpRequestOutput) => output.outcome === 'refused',
  },
  delays: {
    grace: ({ context }) => context.graceMs,
    pollInterval: ({ context }) => context.pollIntervalMs,
    restartConnection: ({ context }) => context.restartMs.connection,
    restartUpload: ({ context }) => context.restartMs.upload,
    restartLogs: ({ context }) => context.restartMs.logs,
    restartBaob: ({ context }) => context.restartMs.baob,
    /** A child that ran this long without failing starts its restart backoff over. */
    stable: 60_000,
  },
}).createMachine({
  id: 'supervisor',
  type: 'parallel',
  context: ({ input }) => ({
    ngttEnabled: input.ngtt ?? false,
    random: input.random,
    graceMs: input.graceMs ?? 60_000,
    pollIntervalMs: input.pollIntervalMs ?? 30_000,
    retry: withDefaults(DEFAULT_BACKOFF, input.retry),
    connectionTimings: input.connection,
    window: input.upload?.window,
    baobAnswerTimeoutMs: input.baob?.answerTimeoutMs,
    link: 'none',
    ngttUp: false,
    epoch: 0,
    orders: [],
    orderSeq: 0,
    restarts: { connection: 0, upload: 0, logs: 0, baob: 0 },
    restartMs: { connection: 0, upload: 0, logs: 0, baob: 0 },
  }),
  on: {
    'CONNECTION.STATE': { actions: { type: 'connectionState', params: ({ event }) => event } },
    'CONNECTION.FRAMES': { actions: { type: 'routeFrames', params: ({ event }) => event } },
    TRANSMIT: {
      guard: 'ngttUp',
      actions: enqueueActions(({ enqueue, check, event }) => {
        if (check(running.connection)) enqueue.sendTo('connection', { type: 'SEND', frame: (event as TransmitEvent).frame });
      }),
    },
    'ORDER.EXECUTING': { actions: emit(({ event }) => event) },
    'ORDER.DONE': { actions: { type: 'orderDone', params: ({ event }) => event } },
    'BATCH.SETTLED': { actions: emit(({ event }) => event) },
    'LOGS.SETTLED': { actions: emit(({ event }) => event) },
    'BAOB.SYNCED': { actions: emit(({ event }) => event) },
    'BAOB.SYNC': {
      actions: enqueueActions(({ enqueue, check, event }) => {
        if (check(running.baob)) enqueue.sendTo('baob', { type: 'SYNC', seq: event.seq });
      }),
    },
    FAULT: { actions: emit(({ event }) => event) },
    RECOVERED: { actions: emit(({ event }) => event) },
    'xstate.error.actor.*': { actions: 'orderFailed' },
    DATA: { actions: { type: 'toUpload', params: { type: 'DATA' } } },
    LOGS: { actions: { type: 'toLogs', params: { type: 'LOGS' } } },
    FLUSH: { actions: [{ type: 'toUpload', params: { type: 'FLUSH' } }, { type: 'toLogs', params: { type: 'FLUSH' } }] },
    STOP: { actions: 'stop' },
    DECLARE: { actions: assign({ pendingDeclarations: ({ event }) => ({ seq: event.seq, declarations: event.declarations }) }) },
  },
  states: {
    ngtt: {
      initial: 'choose',
      states: {
        choose: { always: [{ guard: 'ngttEnabled', target: 'enabled' }, { target: 'disabled' }] },
        disabled: {},
        enabled: {
          initial: 'running',
          states: {
            running: {
              invoke: {
                id: 'connection',
                src: 'connection',
                input: ({ context }) => ({ random: context.random, wantOrders: true, timings: context.connectionTimings }),
                onError: childFailed('connection'),
              },
              entry: sendTo('connection', { type: 'CONNECT' }),
              after: stableAfterAMinute('connection'),
            },
            faulted: restartAfterBackoff('connection', 'restartConnection'),
          },
        },
      },
    },
    upload: {
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: 'upload',
            src: 'upload',
            input: ({ context }): UploadInput => ({ random: context.random, options: { window: context.window, retry: context.retry }, link: context.link }),
            onError: childFailed('upload'),
          },
          after: stableAfterAMinute('upload'),
        },
        faulted: restartAfterBackoff('upload', 'restartUpload'),
      },
    },
    logs: {
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: 'logs',
            src: 'logs',
            input: ({ context }) => ({ random: context.random, retry: context.retry, link: context.link }),
            onError: childFailed('logs'),
          },
          after: stableAfterAMinute('logs'),
        },
        faulted: restartAfterBackoff('logs', 'restartLogs'),
      },
    },
    baob: {
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: 'baob',
            src: 'baob',
            input: ({ context }) => ({ random: context.random, retry: context.retry, link: context.link, answerTimeoutMs: context.baobAnswerTimeoutMs }),
            onError: childFailed('baob'),
          },
          after: stableAfterAMinute('baob'),
        },
        faulted: restartAfterBackoff('baob', 'restartBaob'),
      },
    },
    route: {
      initial: 'choose',
      states: {
        choose: { always: [{ guard: 'ngttEnabled', target: 'grace' }, { target: 'https' }] },
        grace: {
          entry: { type: 'linkAll', params: 'none' },
          always: { guard: 'ngttUp', target: 'ngtt' },
          after: { grace: 'https' },
        },
        ngtt: {
          entry: { type: 'linkAll', params: 'ngtt' },
          always: { guard: not('ngttUp'), target: 'grace' },
        },
        https: {
          entry: { type: 'linkAll', params: 'https' },
          initial: 'polling',
          states: {
            polling: {
              invoke: {
                src: 'pollOrders',
                onDone: { target: 'waiting', actions: { type: 'receivePolled', params: ({ event }) => ({ payload: event.output }) } },
                onError: 'waiting',
              },
            },
            waiting: {
              always: { guard: 'ngttUp', target: '#supervisor.route.ngtt' },
              after: { pollInterval: 'polling' },
            },
          },
        },
      },
    },
    config: {
      initial: 'fetching',
      states: {
        fetching: {
          invoke: {
            src: 'fetchConfig',
            input: ({ context }) => ({ random: context.random, retry: context.retry }),
            onDone: [
              { guard: { type: 'ok', params: ({ event }) => event.output }, target: 'ready', actions: emit(({ event }) => ({ type: 'CONFIG' as const, config: event.output.body as DeviceConfig })) },
              { target: 'ready', actions: emit(({ event }) => ({ type: 'CONFIG.REFUSED' as const, status: event.output.status ?? 0 })) },
            ],
            onError: { target: 'ready', actions: emit(({ event }) => ({ type: 'FAULT' as const, source: 'config', error: errorText(event.error) })) },
          },
        },
        ready: { on: { REFRESH_CONFIG: 'fetching' } },
      },
    },
    declarations: {
      initial: 'idle',
      states: {
        idle: {
          always: {
            guard: 'declarationsPending',
            target: 'declaring',
            actions: assign(({ context }) => ({ declaring: context.pendingDeclarations, pendingDeclarations: undefined })),
          },
        },
        declaring: {
          // A newer declaration replaces this one: stop retrying it (an answer on its way still counts).
          on: {
            DECLARE: {
              actions: [assign({ pendingDeclarations: ({ event }) => ({ seq: event.seq, declarations: event.declarations }) }), sendTo('declare', { type: 'CANCEL' })],
            },
          },
          invoke: {
            id: 'declare',
            src: 'declarePathpoints',
            input: ({ context }) => ({ request: { declarations: context.declaring!.declarations }, random: context.random, retry: context.retry }),
            onDone: [
              { guard: { type: 'ok', params: ({ event }) => event.output }, target: 'idle', actions: emit(({ context }) => ({ type: 'DECLARED' as const, seq: context.declaring!.seq })) },
              {
                guard: { type: 'refused', params: ({ event }) => event.output },
                target: 'idle',
                actions: emit(({ context, event }) => ({ type: 'DECLARE.REFUSED' as const, seq: context.declaring!.seq, status: event.output.status ?? 0 })),
              },
              { target: 'idle' },
            ],
            onError: { target: 'idle', actions: emit(({ event }) => ({ type: 'FAULT' as const, source: 'declarations', error: errorText(event.error) })) },
          },
        },
      },
    },
  },
});

export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;
