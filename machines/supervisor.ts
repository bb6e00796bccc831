/**
 * The device's supervisor (spec §10): owns the other machines and routes traffic between NGTT
 * and HTTPS. Parallel regions:
 *
 * ngtt    — disabled (the default) | enabled: invokes `connection` and tells it to CONNECT.
 * route   — where orders, logs and data go:
 *   https  (NGTT disabled, or down longer than graceMs): polls orders with `pollOrders` every
 *          pollIntervalMs (polling ⇄ waiting); upload and logs get LINK https.
 *   ngtt   (connected): orders arrive as ORDER frames; upload and logs get LINK ngtt.
 *   grace  (NGTT enabled but not connected, for at most graceMs — also right after start):
 *          upload and logs hold (LINK none); after graceMs → https.
 *   A CONNECTION.UP while a poll is out waits for that poll (its orders count as delivered);
 *   upload and logs finish a POST in flight before obeying a LINK change. So nothing queued is
 *   lost or sent twice by the device when switching.
 * config       — fetching (`fetchConfig`, always HTTPS) → ready; failures retry with backoff;
 *                REFRESH_CONFIG fetches again. The result is emitted as CONFIG.
 * declarations — DECLARE {declarations} → declaring (`declarePathpoints`, always HTTPS) → idle;
 *                a newer DECLARE replaces one not yet sent; 5xx/no connection retry; 4xx gives up.
 *
 * Always running: `upload` (pathpoint data) and `logs` children, fed by PUSH / LOG / FLUSH.
 * Spawned per order: `order` children (key `order-N`), from ORDER frames and from poll responses.
 *
 * Routing of what the children report:
 *   CONNECTION.FRAME ORDER → a new order actor, or REDELIVERED to the one already running the
 *     same stable id; DATA_STREAM_CONFIRM/REJECT → upload BATCH.CONFIRMED/REJECTED; any other
 *     frame is emitted as FRAME for the runtime.
 *   TRANSMIT (upload, logs) → SEND on the connection, while it is up (else dropped; upload resends).
 *   ORDER.DONE → ORDER_CONFIRM / ORDER_REJECT {reason} with the order's tid, only on the
 *     connection it came in on (same epoch) and only if that is still up; the order actor is stopped.
 *
 * Emitted for the runtime (actor.on): CONFIG, DECLARED, DECLARE.REFUSED, FRAME, ORDER.DONE.
 */
import { type ActorRefFrom, assign, emit, enqueueActions, fromPromise, not, sendTo, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import type { DeviceConfig, LogRecord, PathpointDeclaration } from '../src/protocol/messages.js';
import { type BackoffOptions, type HttpResult, type InFrame, type Link, type Random, type TransmitEvent, DEFAULT_BACKOFF, backoffDelay, httpOutcome } from './common.js';
import { type ConnectionInput, type ConnectionReport, connectionMachine } from './connection.js';
import { type LogsInput, logsMachine } from './logs.js';
import { type OrderDoneReport, orderIdOf, orderMachine } from './order.js';
import { type UploadInput, uploadMachine } from './upload.js';


export interface SupervisorInput {
  /** Use NGTT for orders, logs and data (spec §10: off by default). */
  ngtt?: boolean;
  /** Jitter for every backoff below. */
  random: Random;
  /** How long NGTT may be down before orders, logs and data fall back to HTTPS. Default 60 s. */
  graceMs?: number;
  /** HTTPS order polling interval. Default 30 s. */
  pollIntervalMs?: number;
  /** Backoff of the config and declaration retries. */
  retry?: Partial<BackoffOptions>;
  connection?: ConnectionInput['timings'];
  upload?: Omit<UploadInput, 'random'>;
  logs?: LogsInput['options'];
}

export interface OrderEntry {
  key: string;
  id?: string;
  via: 'ngtt' | 'https';
}

export interface SupervisorContext {
  ngttEnabled: boolean;
  random: Random;
  graceMs: number;
  pollIntervalMs: number;
  retry: BackoffOptions;
  connectionTimings: ConnectionInput['timings'];
  uploadInput: Omit<UploadInput, 'random'>;
  logOptions: LogsInput['options'];
  /** The connection is authenticated, and its epoch. */
  ngttUp: boolean;
  epoch: number;
  /** Live order actors. */
  orders: OrderEntry[];
  orderSeq: number;
  /** Declarations waiting to be sent, and the ones being sent. */
  pendingDeclarations?: PathpointDeclaration[];
  declarations?: PathpointDeclaration[];
  retries: { config: number; declare: number };
  retryMs: { config: number; declare: number };
}

/** What the runtime sends the supervisor. */
export type SupervisorCommand =
  /** Values are durably in the runtime's spool (see the upload machine). */
  | { type: 'PUSH'; values: number; bytes: number }
  | { type: 'LOG'; records: LogRecord[] }
  | { type: 'FLUSH' }
  | { type: 'DECLARE'; declarations: PathpointDeclaration[] }
  | { type: 'REFRESH_CONFIG' }
  /** Flush upload and logs and close NGTT; the runtime stops the actor when it is done. */
  | { type: 'STOP' };

export type SupervisorEvent = SupervisorCommand | ConnectionReport | TransmitEvent | OrderDoneReport;

/** What the supervisor emits for the runtime. */
export type SupervisorEmitted =
  | { type: 'CONFIG'; config: DeviceConfig }
  | { type: 'DECLARED'; declarations: PathpointDeclaration[] }
  | { type: 'DECLARE.REFUSED'; status: number }
  | { type: 'FRAME'; frame: InFrame }
  | OrderDoneReport;

type RetryKind = keyof SupervisorContext['retries'];

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
    order: orderMachine,
    /** POST /v1/device/orders: resolves the decoded response (a list of sections); rejects on failure. */
    pollOrders: fromPromise<unknown, void>(async () => {
      throw new Error('supervisor: provide the `pollOrders` actor');
    }),
    /** GET /v1/device: resolves the configuration; rejects on any failure (retried). */
    fetchConfig: fromPromise<DeviceConfig, void>(async () => {
      throw new Error('supervisor: provide the `fetchConfig` actor');
    }),
    /** PUT /v1/device/pathpoints: resolves {status}; rejects when there is no connection. */
    declarePathpoints: fromPromise<HttpResult, { declarations: PathpointDeclaration[] }>(async () => {
      throw new Error('supervisor: provide the `declarePathpoints` actor');
    }),
  },
  actions: {
    /** Tell upload and logs where to send. */
    linkAll: enqueueActions(({ enqueue }, link: Link) => {
      enqueue.sendTo('upload', { type: 'LINK', link });
      enqueue.sendTo('logs', { type: 'LINK', link });
    }),
    /** An ORDER frame: a redelivery of an order still running, or a new order actor. */
    receiveOrder: enqueueActions(({ context, enqueue }, frame: InFrame & { epoch: number }) => {
      const id = orderIdOf(frame.payload);
      const running = id === undefined ? undefined : context.orders.find((o) => o.id === id && o.via === 'ngtt');
      if (running) {
        enqueue.sendTo(running.key, { type: 'REDELIVERED', tid: frame.tid, epoch: frame.epoch });
        return;
      }
      const key = `order-${context.orderSeq + 1}`;
      enqueue.spawnChild('order', { id: key, input: { key, via: 'ngtt', tid: frame.tid, epoch: frame.epoch, payload: frame.payload } });
      enqueue.assign({ orderSeq: context.orderSeq + 1, orders: [...context.orders, { key, id, via: 'ngtt' }] });
    }),
    /** A poll response: one order actor for all its sections (nothing when there are none). */
    receivePolled: enqueueActions(({ context, enqueue }, { payload }: { payload: unknown }) => {
      if (Array.isArray(payload) && payload.length === 0) return;
      const key = `order-${context.orderSeq + 1}`;
      enqueue.spawnChild('order', { id: key, input: { key, via: 'https', payload } });
      enqueue.assign({ orderSeq: context.orderSeq + 1, orders: [...context.orders, { key, id: orderIdOf(payload), via: 'https' }] });
    }),
    /** ORDER.DONE: answer on the connection the order came in on, if it is still up; then forget the actor. */
    orderDone: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'ORDER.DONE') return;
      if (event.via === 'ngtt' && context.ngttUp && event.epoch === context.epoch && event.tid !== undefined) {
        const frame =
          event.outcome === 'acked'
            ? { type: FrameType.ORDER_CONFIRM, tid: event.tid }
            : { type: FrameType.ORDER_REJECT, tid: event.tid, payload: event.reason ? { reason: event.reason } : undefined };
        enqueue.sendTo('connection', { type: 'SEND', frame });
      }
      enqueue.stopChild(event.key);
      enqueue.assign({ orders: context.orders.filter((o) => o.key !== event.key) });
      enqueue.emit(event);
    }),
    /** A frame from the connection that is not an ORDER. */
    routeFrame: enqueueActions(({ enqueue }, frame: InFrame) => {
      if (frame.type === FrameType.DATA_STREAM_CONFIRM) enqueue.sendTo('upload', { type: 'BATCH.CONFIRMED', tid: frame.tid });
      else if (frame.type === FrameType.DATA_STREAM_REJECT) {
        const reason = (frame.payload as { reason?: unknown } | undefined)?.reason;
        enqueue.sendTo('upload', { type: 'BATCH.REJECTED', tid: frame.tid, reason: typeof reason === 'string' ? reason : undefined });
      } else enqueue.emit({ type: 'FRAME', frame });
    }),
    stop: enqueueActions(({ context, enqueue }) => {
      enqueue.sendTo('upload', { type: 'FLUSH' });
      enqueue.sendTo('logs', { type: 'FLUSH' });
      if (context.ngttEnabled) enqueue.sendTo('connection', { type: 'CLOSE' });
    }),
    nextRetry: assign(({ context }, kind: RetryKind) => {
      const n = context.retries[kind] + 1;
      return {
        retries: { ...context.retries, [kind]: n },
        retryMs: { ...context.retryMs, [kind]: backoffDelay(n, context.retry, context.random) },
      };
    }),
    resetRetry: assign(({ context }, kind: RetryKind) => ({ retries: { ...context.retries, [kind]: 0 } })),
  },
  guards: {
    ngttEnabled: ({ context }) => context.ngttEnabled,
    ngttUp: ({ context }) => context.ngttUp,
    declarationsPending: ({ context }) => context.pendingDeclarations !== undefined,
  },
  delays: {
    grace: ({ context }) => context.graceMs,
    pollInterval: ({ context }) => context.pollIntervalMs,
    configRetry: ({ context }) => context.retryMs.config,
    declareRetry: ({ context }) => context.retryMs.declare,
  },
}).createMachine({
  id: 'supervisor',
  type: 'parallel',
  context: ({ input }) => ({
    ngttEnabled: input.ngtt ?? false,
    random: input.random,
    graceMs: input.graceMs ?? 60_000,
    pollIntervalMs: input.pollIntervalMs ?? 30_000,
    retry: { ...DEFAULT_BACKOFF, ...input.retry },
    connectionTimings: input.connection,
    uploadInput: input.upload ?? {},
    logOptions: input.logs,
    ngttUp: false,
    epoch: 0,
    orders: [],
    orderSeq: 0,
    retries: { config: 0, declare: 0 },
    retryMs: { config: 0, declare: 0 },
  }),
  invoke: [
    { id: 'upload', src: 'upload', input: ({ context }) => ({ random: context.random, ...context.uploadInput }) },
    { id: 'logs', src: 'logs', input: ({ context }) => ({ random: context.random, options: context.logOptions }) },
  ],
  on: {
    'CONNECTION.UP': { actions: assign({ ngttUp: true, epoch: ({ event }) => event.epoch }) },
    'CONNECTION.DOWN': { actions: assign({ ngttUp: false }) },
    'CONNECTION.CLOSED': { actions: assign({ ngttUp: false }) },
    'CONNECTION.FRAME': [
      {
        guard: ({ event }) => event.frame.type === FrameType.ORDER,
        actions: { type: 'receiveOrder', params: ({ event }) => ({ ...event.frame, epoch: event.epoch }) },
      },
      { actions: { type: 'routeFrame', params: ({ event }) => event.frame } },
    ],
    TRANSMIT: { guard: 'ngttUp', actions: sendTo('connection', ({ event }) => ({ type: 'SEND' as const, frame: event.frame })) },
    'ORDER.DONE': { actions: 'orderDone' },
    PUSH: { actions: sendTo('upload', ({ event }) => event) },
    LOG: { actions: sendTo('logs', ({ event }) => event) },
    FLUSH: { actions: [sendTo('upload', { type: 'FLUSH' }), sendTo('logs', { type: 'FLUSH' })] },
    STOP: { actions: 'stop' },
    DECLARE: { actions: assign({ pendingDeclarations: ({ event }) => event.declarations }) },
  },
  states: {
    ngtt: {
      initial: 'choose',
      states: {
        choose: { always: [{ guard: 'ngttEnabled', target: 'enabled' }, { target: 'disabled' }] },
        disabled: {},
        enabled: {
          invoke: {
            id: 'connection',
            src: 'connection',
            input: ({ context }) => ({ random: context.random, wantOrders: true, timings: context.connectionTimings }),
          },
          entry: sendTo('connection', { type: 'CONNECT' }),
        },
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
            onDone: {
              target: 'ready',
              actions: [{ type: 'resetRetry', params: 'config' }, emit(({ event }) => ({ type: 'CONFIG' as const, config: event.output }))],
            },
            onError: 'retryWait',
          },
        },
        retryWait: {
          entry: { type: 'nextRetry', params: 'config' },
          after: { configRetry: 'fetching' },
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
            actions: assign(({ context }) => ({ declarations: context.pendingDeclarations, pendingDeclarations: undefined })),
          },
        },
        declaring: {
          invoke: {
            src: 'declarePathpoints',
            input: ({ context }) => ({ declarations: context.declarations! }),
            onDone: [
              {
                guard: ({ event }) => httpOutcome(event.output.status) === 'ok',
                target: 'idle',
                actions: [{ type: 'resetRetry', params: 'declare' }, emit(({ context }) => ({ type: 'DECLARED' as const, declarations: context.declarations! }))],
              },
              {
                guard: ({ event }) => httpOutcome(event.output.status) === 'refused',
                target: 'idle',
                actions: [{ type: 'resetRetry', params: 'declare' }, emit(({ event }) => ({ type: 'DECLARE.REFUSED' as const, status: event.output.status }))],
              },
              { target: 'retryWait' },
            ],
            onError: 'retryWait',
          },
        },
        retryWait: {
          entry: { type: 'nextRetry', params: 'declare' },
          // A newer declaration replaces the one that failed.
          always: { guard: 'declarationsPending', target: 'idle' },
          after: { declareRetry: 'declaring' },
        },
      },
    },
  },
});

export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;
