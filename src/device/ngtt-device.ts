/**
 * NgttDevice: the device runtime. Wires the machines (machines/) to real I/O: the TLS socket,
 * the HTTPS client, the SQLite spool and executed-orders store, and the order executor.
 *
 * Data path (spec §8): push() stores values durably in the spool first and only then tells the
 * upload machine how many arrived; the machine decides when to cut batches out of the spool and
 * where to send them. Nothing leaves the spool before the server confirms it.
 */
import { EventEmitter } from 'node:events';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { type AnyActorRef, type InspectionEvent, type Observer, type Subscription, createActor } from 'xstate';
import type { BackoffOptions, Link } from '../../machines/common.js';
import { connectionMachine, type ConnectionInput } from '../../machines/connection.js';
import { logsMachine, type LogsInput } from '../../machines/logs.js';
import { orderMachine, type OrderDoneReport } from '../../machines/order.js';
import { type SupervisorActor, supervisorMachine } from '../../machines/supervisor.js';
import { estimateBytes, uploadMachine, type UploadInput } from '../../machines/upload.js';
import { readDeviceIdentity } from '../pki/identity.js';
import type { DeviceConfig, PathpointDeclaration, PathpointScalar, PathpointSeries } from '../protocol/index.js';
import { openDeviceDatabase, type DeviceDatabase } from './database.js';
import { SqliteExecutedOrders } from './executed-orders.js';
import { OrderExecutor, type ExecutorOptions, type OrderHandlers } from './executor.js';
import { httpActors } from './http-io.js';
import { DeviceHttpsClient, HttpError } from './https-client.js';
import { LogShipper } from './log-shipper.js';
import { orderIo } from './order-io.js';
import { socketActor, type TrafficCounters } from './socket-actor.js';
import { SpoolFullError, SqliteSpool } from './spool.js';
import { DEFAULT_NGTT_PORT } from './tls-transport.js';
import { loadTlsMaterial, type DeviceTlsOptions } from './tls-material.js';
import { uploadIo } from './upload-io.js';

export const DEFAULT_HTTPS_PORT = 8443;
export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export interface NgttDeviceOptions extends DeviceTlsOptions {
  /** Server host name or address (NGTT and HTTPS). */
  host: string;
  ngttPort?: number;
  httpsPort?: number;
  /** Overrides host/httpsPort for the HTTPS API, e.g. `https://api.example.com`. */
  httpsUrl?: string;
  /** Use NGTT for orders, logs and data (spec §10: off by default). */
  ngtt?: boolean;
  /** SQLite file of the spool and the executed-orders store, or ':memory:' (nothing survives a restart). */
  spoolPath: string;
  /** Values the spool holds at most (pending and unconfirmed); push() waits beyond. Default 1 000 000. */
  spoolMaxValues?: number;
  handlers: OrderHandlers;
  logger?: Logger;
  /** Passed to createActor: e.g. createBrowserInspector().inspect from @statelyai/inspect. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** How long NGTT may be down before orders, logs and data fall back to HTTPS. Default 60 s. */
  graceMs?: number;
  /** HTTPS order polling interval. Default 30 s. */
  pollIntervalMs?: number;
  /** Keepalive, connect timeout, reconnect backoff (spec §5.5–5.6). */
  timings?: ConnectionInput['timings'];
  upload?: UploadInput['options'];
  logs?: LogsInput['options'];
  /** Backoff of configuration and declaration retries. */
  retry?: Partial<BackoffOptions>;
  executor?: Pick<ExecutorOptions, 'forceAttempts' | 'retryDelayMs' | 'attemptTimeoutMs'>;
  /** Service name of shipped logs without one. Default 'device'. */
  logService?: string;
  /** Jitter source. Default Math.random. */
  random?: () => number;
}

export type ConnectionStateName = 'disabled' | 'disconnected' | 'connecting' | 'authenticated' | 'closing' | 'backoff' | 'closed';
/** Where orders, logs and data go right now. */
export type Transport = 'ngtt' | 'https' | 'none';

export type DeviceOrderEvent =
  | { phase: 'received'; key: string; id?: string; via: 'ngtt' | 'https' }
  | { phase: 'executing'; key: string; id?: string }
  | { phase: 'done'; key: string; id?: string; via: 'ngtt' | 'https'; outcome: 'acked' | 'rejected'; reason?: string; executed: boolean };

export interface NgttDeviceEvents {
  order: [event: DeviceOrderEvent];
  state: [state: ConnectionStateName];
  transport: [transport: Transport];
  'values-confirmed': [count: number];
  error: [error: Error];
}

export interface DeviceStatus {
  deviceId: string;
  connection: ConnectionStateName;
  transport: Transport;
  /** Since start(): orders received, running now, acknowledged, rejected. */
  orders: { received: number; executing: number; acked: number; rejected: number };
  /** pushed/confirmed/rejected since start(); pending: in the spool now (unbatched and unconfirmed). */
  values: { pushed: number; confirmed: number; pending: number; rejected: number };
  /** Payload bytes since start(): NGTT frames (with their 8-byte headers) and HTTPS bodies; not TLS or HTTP headers. */
  bytesSent: number;
  bytesReceived: number;
}

/** One value: a timestamp (unix ms) defaults to now. */
export interface PathpointReading {
  path: string;
  value: PathpointScalar;
  timestamp?: number;
}

export type PushData = PathpointSeries | PathpointSeries[] | PathpointReading;

export function toSeries(data: PushData, now = Date.now()): PathpointSeries[] {
  if (Array.isArray(data)) return data;
  if ('values' in data) return [data];
  return [{ path: data.path, values: [[data.timestamp ?? now, data.value]] }];
}

const countValues = (series: PathpointSeries[]) => series.reduce((n, s) => n + s.values.length, 0);

/** The certificate's DeviceID (spec §2). */
export function deviceIdOf(cert: DeviceTlsOptions['cert']): string {
  const bytes = loadTlsMaterial(cert);
  const text = bytes.toString('latin1');
  return readDeviceIdentity(text.includes('-----BEGIN') ? text : bytes).deviceId;
}

/** The connection machine's state as one name. */
export function connectionStateName(value: unknown): ConnectionStateName {
  if (typeof value === 'string') return value as ConnectionStateName;
  const session = (value as { session?: unknown }).session;
  return typeof session === 'string' ? (session as ConnectionStateName) : 'authenticated';
}

const transportOf = (route: unknown): Transport => {
  const name = typeof route === 'string' ? route : Object.keys(route as object)[0];
  return name === 'ngtt' || name === 'https' ? name : 'none';
};

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

export class NgttDevice extends EventEmitter<NgttDeviceEvents> {
  readonly deviceId: string;
  /** The last configuration fetched (GET /v1/device), once there is one. */
  config: DeviceConfig | undefined;

  private readonly log: Logger;
  private readonly counters: TrafficCounters = { bytesSent: 0, bytesReceived: 0 };
  /** Set once close() has stopped the machines; from then on nothing is accepted. */
  private stopped = false;
  private readonly orderCounts = { received: 0, executing: 0, acked: 0, rejected: 0 };
  private readonly valueCounts = { pushed: 0, confirmed: 0, rejected: 0 };
  private connection: ConnectionStateName;
  private transport: Transport = 'none';
  private db?: DeviceDatabase;
  private spool?: SqliteSpool;
  private executed?: SqliteExecutedOrders;
  private client?: DeviceHttpsClient;
  private actor?: SupervisorActor;
  private shipper?: LogShipper;
  private shipScheduled = false;
  private readonly subscriptions: Subscription[] = [];
  private connectionRef?: AnyActorRef;
  private readonly liveOrders = new Set<string>();
  private configWaiters: Waiter<DeviceConfig>[] = [];
  private declareWaiters: Waiter<void>[] = [];
  private closing?: Promise<void>;

  constructor(private readonly options: NgttDeviceOptions) {
    super();
    this.deviceId = deviceIdOf(options.cert);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: 'ngtt-device', deviceId: this.deviceId });
    this.connection = options.ngtt ? 'disconnected' : 'disabled';
  }

  /** Opens the spool, starts the machines; NGTT connects (when on) and HTTPS polling starts in the background. */
  start(): this {
    if (this.actor) throw new Error('device already started');
    const o = this.options;
    this.db = openDeviceDatabase(o.spoolPath);
    const spool = (this.spool = SqliteSpool.open(this.db, { maxValues: o.spoolMaxValues }));
    const executed = (this.executed = SqliteExecutedOrders.open(this.db));
    const client = (this.client = new DeviceHttpsClient({
      baseUrl: o.httpsUrl ?? `https://${o.host}:${o.httpsPort ?? DEFAULT_HTTPS_PORT}`,
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      servername: o.servername,
      counters: this.counters,
    }));
    const executor = new OrderExecutor({
      ...o.executor,
      handlers: o.handlers,
      // A reading is in the spool before its order counts as done.
      onReading: (path, value) => this.store([{ path, values: [value] }]),
      log: this.log,
    });
    const http = httpActors(client);
    const upload = uploadIo(spool, client, {
      onSettled: (outcome, values, batchId, reason) => {
        if (outcome === 'confirmed') {
          this.valueCounts.confirmed += values;
          this.emit('values-confirmed', values);
        } else {
          this.valueCounts.rejected += values;
          this.log.warn({ batchId, values, reason }, 'pathpoint batch refused by the server; kept aside');
        }
      },
    });
    const orders = orderIo(executed, executor, {
      onExecuting: (input) => {
        this.orderCounts.executing++;
        this.emit('order', { phase: 'executing', key: input.key, id: input.id });
      },
      onExecuted: () => void this.orderCounts.executing--,
    });
    const machine = supervisorMachine.provide({
      actors: {
        connection: connectionMachine.provide({
          actors: {
            socket: socketActor({
              connect: { host: o.host, port: o.ngttPort ?? DEFAULT_NGTT_PORT, ca: o.ca, cert: o.cert, key: o.key, servername: o.servername },
              counters: this.counters,
              onBadPayload: (type, error) => this.log.warn({ type, err: error }, 'undecodable frame payload'),
            }),
          },
        }),
        upload: uploadMachine.provide(upload),
        logs: logsMachine.provide({ actors: { postLogs: http.postLogs } }),
        order: orderMachine.provide({ actors: orders }),
        pollOrders: http.pollOrders,
        fetchConfig: http.fetchConfig,
        declarePathpoints: http.declarePathpoints,
      },
    });
    const actor = (this.actor = createActor(machine, {
      inspect: o.inspect,
      input: {
        random: o.random ?? Math.random,
        ngtt: o.ngtt ?? false,
        graceMs: o.graceMs,
        pollIntervalMs: o.pollIntervalMs,
        retry: o.retry,
        connection: o.timings,
        logs: o.logs,
        upload: {
          options: o.upload,
          // What an earlier run left: unconfirmed batches go first, unbatched values get cut.
          pending: spool.unconfirmedBatchIds(),
          unbatched: { values: spool.pendingValues, bytes: 0 },
        },
      },
    }));
    this.subscriptions.push(
      actor.subscribe({ next: (s) => this.observe(s), error: (e) => this.fail(e as Error) }),
      actor.on('ORDER.DONE', (e) => this.orderDone(e)),
      actor.on('CONFIG', (e) => {
        this.config = e.config;
        for (const w of this.configWaiters.splice(0)) w.resolve(e.config);
      }),
      actor.on('DECLARED', () => {
        for (const w of this.declareWaiters.splice(0)) w.resolve();
      }),
      actor.on('DECLARE.REFUSED', (e) => {
        for (const w of this.declareWaiters.splice(0)) w.reject(new HttpError(`pathpoint declarations refused: HTTP ${e.status}`, e.status, false));
      }),
      actor.on('FRAME', (e) => this.log.debug({ type: e.frame.type, tid: e.frame.tid }, 'frame ignored')),
    );
    actor.start();
    if (this.shipper?.size) this.scheduleShipping(); // logged before start()
    return this;
  }

  /**
   * Stores values durably in the spool, then hands them to the upload. Resolves once they are
   * stored (they survive a restart from then on); waits while the spool is full.
   */
  async push(data: PushData): Promise<void> {
    await this.store(toSeries(data));
  }

  /** Fetches the configuration again (GET /v1/device, retried until it succeeds). */
  getConfiguration(): Promise<DeviceConfig> {
    const actor = this.started();
    return new Promise((resolve, reject) => {
      this.configWaiters.push({ resolve, reject });
      actor.send({ type: 'REFRESH_CONFIG' });
    });
  }

  /**
   * PUT /v1/device/pathpoints, retried while the server is unreachable. Resolves when the server
   * took these (or newer) declarations; rejects with HttpError on a 4xx.
   */
  declarePathpoints(declarations: PathpointDeclaration[]): Promise<void> {
    const actor = this.started();
    return new Promise((resolve, reject) => {
      this.declareWaiters.push({ resolve, reject });
      actor.send({ type: 'DECLARE', declarations });
    });
  }

  /**
   * A pino logger whose records are shipped to the server as device logs (spec §7) and also
   * written to `alsoTo` (default stdout; null: shipped only). Shipping is best effort: a bounded
   * buffer that never blocks and drops the oldest records when full. Records logged before
   * start() wait for it; those logged before close() are sent by it.
   *
   *   const log = device.logger({ level: 'debug' });   log.info('burner on');
   */
  logger(options: LoggerOptions = {}, alsoTo: DestinationStream | null = pino.destination(1)): Logger {
    const level = options.level ?? 'info';
    const ship = { stream: this.logStream(), level };
    return pino({ ...options, level }, pino.multistream(alsoTo ? [{ stream: alsoTo, level }, ship] : [ship]));
  }

  /**
   * The pino destination behind logger(), for a pino set up your own way. Pass it as the
   * destination — `pino(device.logStream())`, `pino(options, device.logStream())`, or one entry
   * of `pino(options, pino.multistream([...]))`. (A multistream alone, `pino(pino.multistream(…))`,
   * is taken by pino as its options and ships nothing: give the options first.)
   */
  logStream(): DestinationStream & { readonly writable: true } {
    this.shipper ??= new LogShipper({
      service: this.options.logService,
      onRecord: () => this.scheduleShipping(),
    });
    return this.shipper.stream;
  }

  status(): DeviceStatus {
    const spool = this.spool;
    return {
      deviceId: this.deviceId,
      connection: this.connection,
      transport: this.transport,
      orders: { ...this.orderCounts },
      values: { ...this.valueCounts, pending: spool ? spool.pendingValues + spool.inFlightValues : 0 },
      bytesSent: this.counters.bytesSent,
      bytesReceived: this.counters.bytesReceived,
    };
  }

  /**
   * Flushes, waits (up to timeoutMs) for the spool to be confirmed and running orders to
   * finish, closes NGTT, stops the machines and closes the database. What is left unconfirmed
   * stays in the spool for the next start; an order cut short is redelivered by the server.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.timeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    return this.closing;
  }

  // ---- internals -----------------------------------------------------------------------------

  /**
   * The running supervisor. While close() drains, values are still taken: readings of orders
   * that are finishing must reach the spool, or those orders would fail and be rejected for good.
   */
  private started(): SupervisorActor {
    if (!this.actor || this.stopped) throw new Error(this.stopped ? 'device is closed' : 'device not started: call start()');
    return this.actor;
  }

  private async store(series: PathpointSeries[]): Promise<void> {
    const actor = this.started();
    const spool = this.spool!;
    const values = countValues(series);
    if (values === 0) return;
    for (;;) {
      await spool.waitForSpace(values);
      try {
        await spool.push(series);
        break;
      } catch (error) {
        // Another push took the room first: wait again.
        if (!(error instanceof SpoolFullError)) throw error;
      }
    }
    this.valueCounts.pushed += values;
    if (!this.stopped) actor.send({ type: 'PUSH', values, bytes: estimateBytes(series) });
  }

  private scheduleShipping(): void {
    // Before start() the shipper keeps the records; close() hands over the last ones itself.
    if (this.shipScheduled || !this.actor) return;
    this.shipScheduled = true;
    setImmediate(() => {
      this.shipScheduled = false;
      if (!this.closing) this.shipLogs();
    });
  }

  private shipLogs(): void {
    const records = this.shipper?.drain() ?? [];
    if (records.length && this.actor && !this.stopped) this.actor.send({ type: 'LOG', records });
  }

  private observe(snapshot: ReturnType<SupervisorActor['getSnapshot']>): void {
    const transport = transportOf((snapshot.value as { route: unknown }).route);
    if (transport !== this.transport) {
      this.transport = transport;
      this.emit('transport', transport);
    }
    const connection = snapshot.children.connection as AnyActorRef | undefined;
    if (connection && connection !== this.connectionRef) {
      this.connectionRef = connection;
      this.subscriptions.push(connection.subscribe((s) => this.setConnectionState(connectionStateName(s.value))));
    }
    const live = new Set<string>();
    for (const order of snapshot.context.orders) {
      live.add(order.key);
      if (this.liveOrders.has(order.key)) continue;
      this.liveOrders.add(order.key);
      this.orderCounts.received++;
      this.emit('order', { phase: 'received', key: order.key, id: order.id, via: order.via });
    }
    for (const key of this.liveOrders) if (!live.has(key)) this.liveOrders.delete(key);
  }

  private setConnectionState(state: ConnectionStateName): void {
    if (state === this.connection) return;
    this.connection = state;
    this.emit('state', state);
  }

  private orderDone(e: OrderDoneReport): void {
    if (e.outcome === 'acked') this.orderCounts.acked++;
    else this.orderCounts.rejected++;
    this.emit('order', { phase: 'done', key: e.key, id: e.id, via: e.via, outcome: e.outcome, reason: e.reason, executed: e.executed });
  }

  private fail(error: Error): void {
    this.log.error({ err: error }, 'device runtime failed');
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    const actor = this.actor;
    if (!actor) return;
    const deadline = Date.now() + timeoutMs;
    const spool = this.spool!;
    this.shipLogs(); // what was logged just before close()
    actor.send({ type: 'FLUSH' });
    // Nothing to wait for without a link: the spool keeps the values for the next start.
    await waitUntil(() => this.orderCounts.executing === 0 && (this.transport === 'none' || spool.pendingValues + spool.inFlightValues === 0), deadline);
    actor.send({ type: 'STOP' });
    await waitUntil(() => this.connection === 'closed' || this.connection === 'disabled', Math.min(deadline, Date.now() + 5_000));
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
    this.stopped = true;
    actor.stop();
    const closed = new Error('device is closed');
    for (const w of [...this.configWaiters.splice(0), ...this.declareWaiters.splice(0)]) w.reject(closed);
    this.client?.close();
    await spool.close();
    this.executed?.close();
    this.db?.close();
  }
}

/** Resolves when `done()` holds (checked every 20 ms) or at `deadline` (unix ms). */
async function waitUntil(done: () => boolean, deadline: number): Promise<void> {
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
