/**
 * NgttDevice: the device runtime. Wires the machines (machines/) to real I/O: the TLS socket,
 * the HTTPS client, the SQLite spool and executed-orders store, the log buffer and the order
 * executor. It learns what happens only from the events the supervisor emits.
 *
 * Data path (spec §8): push() stores values durably in the spool first and only then tells the
 * upload machine (DATA); the machine asks the spool for due batches and says where they go.
 * Nothing leaves the spool before the server confirms it.
 *
 * Faults never stop it: a machine that fails is restarted by its supervisor, a supervisor that
 * fails is restarted here, listeners' exceptions are caught. Each fault shows in status() and
 * as a 'fault' event (and 'error', for those who listen to it).
 */
import { EventEmitter } from 'node:events';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { type InspectionEvent, type Observer, type Subscription, createActor, fromPromise } from 'xstate';
import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelay, errorText, withDefaults } from '../../machines/common.js';
import { type BaobSyncSummary, baobMachine } from '../../machines/baob.js';
import { connectionMachine, type ConnectionInput, type ConnectionState } from '../../machines/connection.js';
import { logsMachine, type NextLogs } from '../../machines/logs.js';
import { orderMachine, type OrderDoneReport } from '../../machines/order.js';
import { stopChildrenOf, withOrphanStop } from './orphans.js';
import { type SupervisorActor, type SupervisorEmitted, supervisorMachine } from '../../machines/supervisor.js';
import { uploadMachine } from '../../machines/upload.js';
import { readDeviceIdentity } from '../pki/identity.js';
import type { DeviceConfig, PathpointDeclaration, PathpointScalar, PathpointSeries } from '../protocol/index.js';
import { baobIo, type DeviceBaobEvent } from './baob-io.js';
import { SqliteBaobStore, type DeviceBaob, type DeviceBaobInfo } from './baob-store.js';
import { openDeviceDatabase, type DeviceDatabase } from './database.js';
import { SqliteExecutedOrders } from './executed-orders.js';
import { SqliteMessageReceipts } from './message-receipts.js';
import { OrderExecutor, type ExecutorOptions, type OrderHandlers } from './executor.js';
import { httpIo, observedCall, runRetried } from './http-io.js';
import { emitIsolated } from './isolated-emit.js';
import { DeviceHttpsClient, HttpError } from './https-client.js';
import { LogShipper } from './log-shipper.js';
import { orderIo } from './order-io.js';
import { socketActor, type TrafficCounters } from './socket-actor.js';
import { SpoolFullError, SpoolStorageError, SqliteSpool } from './spool.js';
import { DEFAULT_NGTT_PORT } from './tls-transport.js';
import { loadTlsMaterial, type DeviceTlsOptions } from './tls-material.js';
import { uploadIo } from './upload-io.js';

export const DEFAULT_HTTPS_PORT = 8443;
export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;
/** How long getConfiguration() and declarePathpoints() wait by default. */
export const DEFAULT_WAIT_MS = 60_000;

/** Batching (the spool's limits) and the NGTT window of pathpoint data. */
export interface DeviceUploadOptions {
  /** A batch holds at most this many values, and is due at this many. Default 1000. */
  maxBatchValues?: number;
  /** Upper bound of a batch's payload, and due at this many bytes. Default 64 KiB. */
  maxBatchBytes?: number;
  /** A value waits at most this long for its batch. Default 5 s. */
  maxBatchAgeMs?: number;
  /** DATA_STREAMs unanswered at once over NGTT. Default 8. */
  window?: number;
}

/** The log buffer: bounded, drops the oldest. */
export interface DeviceLogOptions {
  /** Records buffered at most. Default 1000. */
  maxBuffered?: number;
  /** Records per LOGS frame / PUT. Default 100. */
  maxBatchRecords?: number;
  /** A record waits at most this long for its batch. Default 5 s. */
  maxBatchAgeMs?: number;
}

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
  /** Shows this device and its machines in a live view while developing: `await startLiveView()` from 'ngtt/live'. */
  live?: DeviceWatcher;
  /** How long NGTT may be down before orders, logs and data fall back to HTTPS. Default 60 s. */
  graceMs?: number;
  /** HTTPS order polling interval. Default 30 s. */
  pollIntervalMs?: number;
  /** Keepalive, connect timeout, reconnect backoff (spec §5.5–5.6). */
  timings?: ConnectionInput['timings'];
  upload?: DeviceUploadOptions;
  logs?: DeviceLogOptions;
  /** Backoff of every HTTPS retry and of restarting a part that failed. Default 1 s doubling to 60 s. */
  retry?: Partial<BackoffOptions>;
  executor?: Pick<ExecutorOptions, 'forceAttempts' | 'retryDelayMs' | 'attemptTimeoutMs' | 'abortGraceMs'>;
  /** Service name of shipped logs without one. Default 'device'. */
  logService?: string;
  /** Jitter source. Default Math.random. */
  random?: () => number;
  /** How long a BAOB sync over NGTT waits for SYNC_BAOB_RESPONSE before it counts as failed (and is retried). Default 60 s. */
  baobAnswerTimeoutMs?: number;
}

/** What a BAOB sync did: the keys that changed, by direction. */
export type DeviceBaobSyncResult = BaobSyncSummary;

/**
 * The device's BAOBs (spec §11), `device.baobs`: files shared with the server (configuration,
 * scripts, firmware), each a key with bytes and a version, kept in the spool's database.
 */
export interface DeviceBaobs {
  /** The value held now, or undefined. */
  get(key: string): DeviceBaob | undefined;
  /**
   * Stores a new value: the version goes up by one (a new key starts at 0), and a sync follows,
   * which uploads it if the server's version is lower. A key the server does not hold is deleted
   * on the device by the next sync (spec §11): devices change BAOBs the server published.
   * Returns the new version. Throws TypeError for an unusable key or value.
   */
  put(key: string, bytes: Uint8Array | string): number;
  list(): DeviceBaobInfo[];
  /**
   * Syncs now (or right after the sync running): resolves with what that sync changed. A failing
   * sync is retried with backoff; this rejects only when `signal` aborts, `timeoutMs` (default
   * 60 s) passes or the device closes.
   */
  sync(options?: WaitOptions): Promise<DeviceBaobSyncResult>;
}

/** Watches a device during development (the live view of 'ngtt/live'): gets the device, gives the inspector of its machines. */
export interface DeviceWatcher {
  attach(device: NgttDevice): (event: InspectionEvent) => void;
}

export type ConnectionStateName = 'disabled' | ConnectionState;
/** Where orders, logs and data go right now. */
export type Transport = 'ngtt' | 'https' | 'none';

export type DeviceOrderEvent =
  | { phase: 'received'; key: string; id?: string; via: 'ngtt' | 'https' }
  | { phase: 'executing'; key: string; id?: string }
  | { phase: 'done'; key: string; id?: string; via: 'ngtt' | 'https'; outcome: 'acked' | 'rejected'; reason?: string; executed: boolean };

/**
 * Where a fault happened: `connection`, `upload`, `logs` (a machine failed and is restarted),
 * `upload.spool` / `upload.settle` (the spool failed under the upload), `spool` (a push could
 * not be stored, or unreadable rows were set aside), `https` (the server answered with an
 * error or not at all), `config`, `declarations`, `order`, `handler` (an order handler threw
 * something other than PathpointError, or ignored its abort), `listener` (one of your event
 * listeners threw), `supervisor` (restarted), `baob` (a BAOB sync failed and is retried),
 * `message-receipt` (the server refused a message order's receipt).
 */
export type FaultSource = string;

export interface DeviceFault {
  source: FaultSource;
  message: string;
  error: Error;
  /** Unix ms. */
  at: number;
}

export interface NgttDeviceEvents {
  order: [event: DeviceOrderEvent];
  /** The connection's state; entering backoff says why the link went (e.g. 'PING not answered') and how long it waits. */
  state: [state: ConnectionStateName, detail: { reason?: string; delayMs?: number }];
  transport: [transport: Transport];
  'values-confirmed': [count: number];
  /** A BAOB changed by a sync: downloaded (a newer version from the server), deleted (the server has none), uploaded. */
  baob: [event: DeviceBaobEvent];
  /** Something went wrong and was contained; status().faults tells what is still failing. */
  fault: [fault: DeviceFault];
  /** The same faults as Error objects, for those who listen to 'error' (never thrown when nobody does). */
  error: [error: Error];
}

export interface DeviceStatus {
  deviceId: string;
  connection: ConnectionStateName;
  transport: Transport;
  /** Since start(): orders received, running now, acknowledged, rejected. */
  orders: { received: number; executing: number; acked: number; rejected: number };
  /** pushed/confirmed/rejected since start(); pending: in the spool now (in a batch or not). */
  values: { pushed: number; confirmed: number; pending: number; rejected: number };
  /**
   * The device's own log records since start(): stored (the server proved it stored them),
   * refused by the server (HTTPS 4xx), dropped because the bounded buffer was full; and
   * buffered now (waiting, including the batch on its way until its receipt).
   */
  logs: { stored: number; refused: number; dropped: number; buffered: number };
  /** Payload bytes since start(): NGTT frames (with their 8-byte headers) and HTTPS bodies; not TLS or HTTP headers. */
  bytesSent: number;
  bytesReceived: number;
  /** Faults since start(); `active`: the sources still failing (retrying) now. */
  faults: { count: number; active: FaultSource[]; last?: { source: FaultSource; message: string; at: number } };
}

/** One value: a timestamp (unix ms) defaults to now. */
export interface PathpointReading {
  path: string;
  value: PathpointScalar;
  timestamp?: number;
}

export type PushData = PathpointSeries | PathpointSeries[] | PathpointReading;

/** How long a call may wait, and a signal to give up earlier. */
export interface WaitOptions {
  signal?: AbortSignal;
  /** Default 60 s. */
  timeoutMs?: number;
}

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

interface Waiter<T> {
  /** DECLARE's seq: settled by an answer for this or a newer one. */
  seq: number;
  resolve(value: T): void;
  reject(error: Error): void;
}

export class NgttDevice extends EventEmitter<NgttDeviceEvents> {
  readonly deviceId: string;
  /** The last configuration fetched (GET /v1/device), once there is one. */
  config: DeviceConfig | undefined;
  /** The BAOBs (spec §11); usable from start() to close(). */
  readonly baobs: DeviceBaobs;

  private readonly log: Logger;
  private readonly counters: TrafficCounters = { bytesSent: 0, bytesReceived: 0 };
  private readonly shipper: LogShipper;
  private readonly retry: BackoffOptions;
  private readonly random: () => number;
  /** start() ran. */
  private started = false;
  /** close() began: new waits are refused, pushes still stored (readings of finishing orders). */
  private closing?: Promise<void>;
  /** close() stopped the machines: nothing is accepted any more. */
  private stopped = false;
  private readonly orderCounts = { received: 0, acked: 0, rejected: 0 };
  private readonly executing = new Set<string>();
  private readonly valueCounts = { pushed: 0, confirmed: 0, rejected: 0 };
  private readonly logCounts = { stored: 0, refused: 0 };
  private readonly faultCounts: { count: number; last?: DeviceStatus['faults']['last'] } = { count: 0 };
  private readonly activeFaults = new Set<FaultSource>();
  private connection: ConnectionStateName;
  private transport: Transport = 'none';
  private db?: DeviceDatabase;
  private spool?: SqliteSpool;
  private executed?: SqliteExecutedOrders;
  private baobStore?: SqliteBaobStore;
  private baobWaiters: Waiter<DeviceBaobSyncResult>[] = [];
  private baobSeq = 0;
  private baobSyncScheduled = false;
  /** Message receipts not yet answered by the server (durable), and the abort of those being sent (close()). */
  private pendingReceipts?: SqliteMessageReceipts;
  private receiptRequest?: ReturnType<typeof httpIo>['messageReceipt'];
  private readonly receipts = new AbortController();
  private client?: DeviceHttpsClient;
  private machine?: ReturnType<NgttDevice['provideMachines']>;
  private actor?: SupervisorActor;
  private readonly subscriptions: Subscription[] = [];
  private supervisorFailures = 0;
  private restartTimer?: NodeJS.Timeout;
  private shipScheduled = false;
  private dataScheduled = false;
  private configWaiters: Waiter<DeviceConfig>[] = [];
  private declareWaiters: Waiter<void>[] = [];
  private declareSeq = 0;
  /** The last HTTPS failure per request, for the message of a wait that times out. */
  private readonly lastHttpError = new Map<string, string>();
  /** The last fault a machine reported, by source (e.g. `baob`), for the same. */
  private readonly lastFault = new Map<string, string>();
  /** Internal: something the close() waits look at has changed. */
  private readonly changes = new EventEmitter();
  private readonly inspectors: NonNullable<NgttDeviceOptions['inspect']>[];

  constructor(private readonly options: NgttDeviceOptions) {
    super();
    this.deviceId = deviceIdOf(options.cert);
    this.inspectors = [options.inspect, options.live?.attach(this)].filter((i) => i !== undefined);
    this.log = (options.logger ?? pino({ enabled: false })).child({ component: 'ngtt-device', deviceId: this.deviceId });
    this.connection = options.ngtt ? 'disconnected' : 'disabled';
    this.retry = withDefaults(DEFAULT_BACKOFF, options.retry);
    this.random = options.random ?? Math.random;
    // Records logged before start() wait here (bounded) until the logs machine asks for them.
    this.shipper = new LogShipper({
      service: options.logService,
      capacity: options.logs?.maxBuffered,
      maxBatchRecords: options.logs?.maxBatchRecords,
      maxBatchAgeMs: options.logs?.maxBatchAgeMs,
      onRecord: () => this.scheduleShipping(),
    });
    this.baobs = {
      get: (key) => this.openBaobs().get(key),
      put: (key, bytes) => {
        const version = this.openBaobs().put(key, bytes);
        this.scheduleBaobSync();
        return version;
      },
      list: () => this.openBaobs().list(),
      sync: async (options = {}) => {
        const actor = this.accepting();
        const seq = ++this.baobSeq;
        return this.waitFor(this.baobWaiters, seq, 'a BAOB sync', 'baob', options, () => actor.send({ type: 'BAOB.SYNC', seq }));
      },
    };
  }

  /**
   * Every listener is called in turn and its exception is caught and reported as a `listener`
   * fault: one throwing listener stops neither the others nor the device. 'error' with no
   * listener is not thrown.
   */
  override emit<K>(eventName: keyof NgttDeviceEvents | K, ...args: K extends keyof NgttDeviceEvents ? NgttDeviceEvents[K] : never): boolean {
    return emitIsolated(this as EventEmitter, eventName as string, args, (error) => {
      if (eventName === 'fault' || eventName === 'error') this.log.error({ err: error }, `a '${String(eventName)}' listener threw`);
      else this.fault('listener', `a '${String(eventName)}' listener threw: ${errorText(error)}`, { error });
    });
  }

  /** Opens the spool, starts the machines; NGTT connects (when on) and HTTPS polling starts in the background. */
  start(): this {
    if (this.started) throw new Error('device already started');
    this.started = true;
    const o = this.options;
    this.db = openDeviceDatabase(o.spoolPath);
    this.spool = SqliteSpool.open(this.db, {
      maxValues: o.spoolMaxValues,
      batch: { maxValues: o.upload?.maxBatchValues, maxBytes: o.upload?.maxBatchBytes, maxAgeMs: o.upload?.maxBatchAgeMs },
      onUnreadable: (_, reason) => this.fault('spool', reason),
    });
    this.executed = SqliteExecutedOrders.open(this.db);
    this.baobStore = SqliteBaobStore.open(this.db);
    this.pendingReceipts = new SqliteMessageReceipts(this.db);
    this.client = new DeviceHttpsClient({
      baseUrl: o.httpsUrl ?? `https://${o.host}:${o.httpsPort ?? DEFAULT_HTTPS_PORT}`,
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      servername: o.servername,
      counters: this.counters,
    });
    this.machine = this.provideMachines();
    this.startSupervisor();
    // Receipts the last run could not deliver.
    for (const uuid of this.pendingReceipts.pending()) this.sendReceipt(uuid);
    return this;
  }

  /**
   * Stores values durably in the spool, then hands them to the upload. Resolves once they are
   * stored (they survive a restart from then on); waits while the spool is full. Rejects when
   * the device is not started or closed (also while waiting), or when the storage fails
   * (SpoolStorageError, e.g. a full disk): then nothing of this push was stored.
   */
  async push(data: PushData): Promise<void> {
    await this.store(toSeries(data));
  }

  /**
   * Fetches the configuration again (GET /v1/device). A 4xx rejects at once with HttpError and
   * its status; 5xx and no connection are retried with backoff until `signal` aborts or
   * `timeoutMs` (default 60 s) passes.
   */
  async getConfiguration(options: WaitOptions = {}): Promise<DeviceConfig> {
    const actor = this.accepting();
    return this.waitFor(this.configWaiters, 0, 'the device configuration', 'GET /v1/device', options, () => actor.send({ type: 'REFRESH_CONFIG' }));
  }

  /**
   * PUT /v1/device/pathpoints, retried while the server is unreachable. Resolves when the server
   * took these (or newer) declarations; rejects with HttpError on a 4xx, and when `signal`
   * aborts or `timeoutMs` (default 60 s) passes first. A newer call replaces one not yet taken.
   */
  async declarePathpoints(declarations: PathpointDeclaration[], options: WaitOptions = {}): Promise<void> {
    const actor = this.accepting();
    const seq = ++this.declareSeq;
    return this.waitFor(this.declareWaiters, seq, 'the pathpoint declarations to be taken', 'PUT /v1/device/pathpoints', options, () =>
      actor.send({ type: 'DECLARE', seq, declarations }),
    );
  }

  /**
   * A pino logger whose records are shipped to the server as device logs (spec §7) and also
   * written to `alsoTo` (default stdout; null: shipped only). Records wait in a bounded buffer
   * that never blocks and drops the oldest when full; a batch is kept until the server proves it
   * stored it (machines/logs.ts). Records logged before start() wait for it; those logged
   * before close() are sent by it.
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
    return this.shipper.stream;
  }

  status(): DeviceStatus {
    const spool = this.spool;
    return {
      deviceId: this.deviceId,
      connection: this.connection,
      transport: this.transport,
      orders: { ...this.orderCounts, executing: this.executing.size },
      values: { ...this.valueCounts, pending: spool ? spool.pendingValues + spool.batchedValues : 0 },
      logs: { ...this.logCounts, dropped: this.shipper.dropped, buffered: this.shipper.size + this.logsOnTheirWay() },
      bytesSent: this.counters.bytesSent,
      bytesReceived: this.counters.bytesReceived,
      faults: { count: this.faultCounts.count, active: [...this.activeFaults], last: this.faultCounts.last },
    };
  }

  /**
   * Flushes, waits (up to timeoutMs) for the spool to be confirmed, the buffered log records to
   * be stored and running orders to finish, closes NGTT, stops the machines and closes the
   * database. What is left unconfirmed stays in the spool for the next start; an order cut short is aborted (its handler's signal)
   * and redelivered by the server. Pending push() and getConfiguration() calls are rejected.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.timeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    return this.closing;
  }

  // ---- wiring --------------------------------------------------------------------------------

  private provideMachines() {
    const o = this.options;
    const spool = this.spool!;
    const http = httpIo(this.client!, (what, outcome) => this.observeHttp(what, outcome));
    this.receiptRequest = http.messageReceipt;
    const executor = new OrderExecutor({
      ...o.executor,
      handlers: this.withMessageReceipts(o.handlers),
      // A reading is in the spool before its order counts as done.
      onReading: (path, value) => this.store([{ path, values: [value] }]),
      onFault: (error) => this.fault('handler', error.message),
      log: this.log,
    });
    const call = observedCall(this.client!, (what, outcome) => this.observeHttp(what, outcome));
    return supervisorMachine.provide({
      actors: {
        connection: connectionMachine.provide({
          actors: {
            socket: socketActor({
              connect: { host: o.host, port: o.ngttPort ?? DEFAULT_NGTT_PORT, ca: o.ca, cert: o.cert, key: o.key, servername: o.servername },
              counters: this.counters,
              onBadPayload: (type, error) => this.log.warn({ type, err: error }, 'undecodable frame payload'),
              onBadFrame: (type, error) => this.fault('connection', `frame type ${type} could not be encoded: ${error.message}`),
            }),
          },
        }),
        upload: uploadMachine.provide({ actors: { ...uploadIo(spool), postBatch: http.postBatch } }),
        logs: logsMachine.provide({
          actors: { nextLogs: this.nextLogs(), postLogs: http.postLogs },
        }),
        order: orderMachine.provide({ actors: orderIo(this.executed!, executor) }),
        baob: baobMachine.provide({
          actors: baobIo(this.baobStore!, call, { random: this.random, retry: this.retry }, (event) => this.emit('baob', event)),
        }),
        pollOrders: http.pollOrders,
        fetchConfig: http.fetchConfig,
        declarePathpoints: http.declarePathpoints,
      },
    });
  }

  /** The logs machine asks the log buffer for the next batch. */
  private nextLogs() {
    return fromPromise<NextLogs, { flush: boolean }>(async ({ input }) => this.shipper.next(input));
  }

  private startSupervisor(): void {
    const o = this.options;
    const actor = (this.actor = createActor(this.machine!, {
      inspect: withOrphanStop(guardInspector(this.inspectors)),
      input: {
        random: this.random,
        ngtt: o.ngtt ?? false,
        graceMs: o.graceMs,
        pollIntervalMs: o.pollIntervalMs,
        retry: o.retry,
        connection: o.timings,
        upload: { window: o.upload?.window },
        baob: { answerTimeoutMs: o.baobAnswerTimeoutMs },
      },
    }));
    this.subscriptions.push(
      actor.on('*', (event) => {
        try {
          this.handle(event);
        } catch (error) {
          // Our own bug: still never thrown into the machine (xstate would rethrow it, uncaught).
          this.log.error({ err: error, event: event.type }, 'device runtime: handling an event failed');
        }
        this.changes.emit('change');
      }),
      actor.subscribe({ error: (error) => this.supervisorFailed(actor, error) }),
    );
    actor.start();
  }

  /** The supervisor itself failed: report, and start a fresh one after a backoff. Spool and server keep the state. */
  private supervisorFailed(actor: SupervisorActor, error: unknown): void {
    if (actor !== this.actor || this.stopped) return;
    this.fault('supervisor', `the supervisor failed and is restarted: ${errorText(error)}`, { error, active: true });
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
    stopChildrenOf(actor); // or the old connection keeps its socket and fights the fresh one
    this.actor = undefined;
    this.executing.clear();
    this.setTransport('none');
    if (this.options.ngtt) this.setConnection('disconnected');
    const delay = backoffDelay(++this.supervisorFailures, this.retry, this.random);
    this.restartTimer = setTimeout(() => {
      if (this.stopped) return;
      this.startSupervisor();
      this.recovered('supervisor');
    }, delay);
  }

  /** Records of the batch the logs machine holds until the server proves it stored it. */
  private logsOnTheirWay(): number {
    const logs = this.actor?.getSnapshot().children.logs?.getSnapshot() as { context?: { sending?: unknown[] } } | undefined;
    return logs?.context?.sending?.length ?? 0;
  }

  /** Everything the runtime knows of the machines comes through here. */
  private handle(e: SupervisorEmitted): void {
    switch (e.type) {
      case 'CONNECTION.STATE':
        if (this.options.ngtt) this.setConnection(e.state, { reason: e.reason, delayMs: e.delayMs });
        return;
      case 'TRANSPORT':
        return this.setTransport(e.transport);
      case 'ORDER.RECEIVED':
        this.orderCounts.received++;
        return void this.emit('order', { phase: 'received', key: e.key, id: e.id, via: e.via });
      case 'ORDER.EXECUTING':
        this.executing.add(e.key);
        return void this.emit('order', { phase: 'executing', key: e.key, id: e.id });
      case 'ORDER.DONE':
        return this.orderDone(e);
      case 'BATCH.SETTLED':
        if (e.outcome === 'confirmed') {
          this.valueCounts.confirmed += e.values;
          if (e.values > 0) this.emit('values-confirmed', e.values);
        } else {
          this.valueCounts.rejected += e.values;
          this.fault('upload', `batch ${e.id} (${e.values} values) refused by the server: ${e.reason ?? 'rejected'}; kept aside in the spool`);
        }
        return;
      case 'LOGS.SETTLED':
        this.logCounts[e.outcome] += e.records;
        return;
      case 'CONFIG':
        this.config = e.config;
        return this.settle(this.configWaiters, Infinity, (w) => w.resolve(e.config));
      case 'CONFIG.REFUSED':
        return this.settle(this.configWaiters, Infinity, (w) => w.reject(new HttpError(`GET /v1/device: HTTP ${e.status}${this.lastHttpText('GET /v1/device')}`, e.status, false)));
      case 'DECLARED':
        return this.settle(this.declareWaiters, e.seq, (w) => w.resolve());
      case 'DECLARE.REFUSED':
        return this.settle(this.declareWaiters, e.seq, (w) => w.reject(new HttpError(`pathpoint declarations refused: HTTP ${e.status}`, e.status, false)));
      case 'BAOB.SYNCED': {
        const { type: _, seq, ...result } = e;
        return this.settle(this.baobWaiters, seq, (w) => w.resolve(result));
      }
      case 'FRAME':
        return void this.log.debug({ type: e.frame.type, tid: e.frame.tid }, 'frame ignored');
      case 'FAULT':
        this.lastFault.set(e.source, e.error);
        return this.fault(e.source, e.error, { active: true });
      case 'RECOVERED':
        this.lastFault.delete(e.source);
        return this.recovered(e.source);
    }
  }

  private orderDone(e: OrderDoneReport): void {
    this.executing.delete(e.key);
    if (e.outcome === 'acked') this.orderCounts.acked++;
    else this.orderCounts.rejected++;
    this.emit('order', { phase: 'done', key: e.key, id: e.id, via: e.via, outcome: e.outcome, reason: e.reason, executed: e.executed });
  }

  private setConnection(state: ConnectionStateName, detail: { reason?: string; delayMs?: number } = {}): void {
    if (state === this.connection && state !== 'backoff') return;
    this.connection = state;
    this.emit('state', state, detail);
  }

  private setTransport(transport: Transport): void {
    if (transport === this.transport) return;
    this.transport = transport;
    this.emit('transport', transport);
  }

  // ---- faults --------------------------------------------------------------------------------

  /** Records a contained fault: counted, shown in status(), logged, emitted. Never throws. */
  private fault(source: FaultSource, message: string, extra: { error?: unknown; active?: boolean } = {}): void {
    try {
      const at = Date.now();
      const error = extra.error instanceof Error ? extra.error : new Error(message);
      this.faultCounts.count++;
      this.faultCounts.last = { source, message, at };
      if (extra.active) this.activeFaults.add(source);
      this.log.warn({ source, err: extra.error instanceof Error ? extra.error : undefined }, `fault (${source}): ${message}`);
      this.emit('fault', { source, message, error, at });
      if (this.listenerCount('error') > 0) this.emit('error', error);
    } catch (error) {
      this.log.error({ err: error }, 'reporting a fault failed');
    }
  }

  private recovered(source: FaultSource): void {
    if (this.activeFaults.delete(source)) this.log.info({ source }, `recovered (${source})`);
  }

  /** HTTPS trouble is a fault while it lasts; any success of the same request ends it. */
  private observeHttp(what: string, outcome: { status: number; body: unknown } | { error: Error }): void {
    if ('status' in outcome && outcome.status >= 200 && outcome.status < 300) {
      this.lastHttpError.delete(what);
      if (this.lastHttpError.size === 0) this.recovered('https');
      return;
    }
    const text = 'error' in outcome ? outcome.error.message : `${what}: HTTP ${outcome.status}${statusText(outcome.body)}`;
    this.lastHttpError.set(what, text);
    this.fault('https', text, { active: true, error: 'error' in outcome ? outcome.error : undefined });
  }

  private lastHttpText(what: string): string {
    const last = this.lastHttpError.get(what) ?? this.lastFault.get(what);
    return last ? ` (${last})` : '';
  }

  // ---- calls ---------------------------------------------------------------------------------

  /** The running supervisor, for a new request; throws (the caller's promise rejects) otherwise. */
  private accepting(): SupervisorActor {
    if (!this.started) throw new Error('device not started: call start()');
    if (this.closing) throw new Error(this.stopped ? 'device is closed' : 'device is closing');
    if (!this.actor) throw new Error('device is restarting after a fault; try again');
    return this.actor;
  }

  /** Waits for the supervisor's answer to a request, at most timeoutMs, or until `signal` aborts. */
  private waitFor<T>(list: Waiter<T>[], seq: number, what: string, request: string, options: WaitOptions, send: () => void): Promise<T> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = list.indexOf(waiter);
        if (i >= 0) list.splice(i, 1);
      };
      const waiter: Waiter<T> = {
        seq,
        resolve: (value) => (done(), resolve(value)),
        reject: (error) => (done(), reject(error)),
      };
      const onAbort = () => waiter.reject(signal!.reason);
      const timer = setTimeout(
        () => waiter.reject(Object.assign(new Error(`no answer for ${what} within ${timeoutMs} ms${this.lastHttpText(request)}`), { name: 'TimeoutError' })),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(waiter);
      send();
    });
  }

  /** Settles the waiters whose seq is at most `seq`. */
  private settle<T>(list: Waiter<T>[], seq: number, how: (w: Waiter<T>) => void): void {
    for (const w of list.filter((x) => x.seq <= seq)) how(w);
  }

  private async store(series: PathpointSeries[]): Promise<void> {
    if (!this.started) throw new Error('device not started: call start()');
    if (this.stopped) throw new Error('device is closed');
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
        if (error instanceof SpoolFullError) continue;
        if (error instanceof SpoolStorageError) this.fault('spool', error.message, { error, active: true });
        throw error;
      }
    }
    this.recovered('spool');
    this.valueCounts.pushed += values;
    // The pushes of one group commit resolve together: one DATA for all of them.
    if (this.dataScheduled) return;
    this.dataScheduled = true;
    queueMicrotask(() => {
      this.dataScheduled = false;
      if (!this.stopped) this.actor?.send({ type: 'DATA' });
    });
  }

  /** The BAOB store while the device runs; throws (for the caller) otherwise. */
  private openBaobs(): SqliteBaobStore {
    if (!this.started) throw new Error('device not started: call start()');
    if (this.stopped) throw new Error('device is closed');
    return this.baobStore!;
  }

  /** put()s in one turn ask for one sync. */
  private scheduleBaobSync(): void {
    if (this.baobSyncScheduled) return;
    this.baobSyncScheduled = true;
    queueMicrotask(() => {
      this.baobSyncScheduled = false;
      if (!this.stopped) this.actor?.send({ type: 'BAOB.SYNC', seq: this.baobSeq });
    });
  }

  /**
   * A message order (spec §6) tells the server it was received, as the deployed client does:
   * after the handler ran, `POST /v1/device/orders/message/<uuid>`, retried with backoff (the
   * HTTP retry machine) until it is answered or the device closes. The order does not wait for
   * it: its ack goes on the order's own transport. The receipt is stored first and kept until
   * the server answered it: one cut short by close() goes out after the next start.
   */
  private withMessageReceipts(handlers: OrderHandlers): OrderHandlers {
    const onMessage = handlers.onMessage;
    if (!onMessage) return handlers;
    return {
      ...handlers,
      onMessage: async (uuid, context) => {
        await onMessage.call(handlers, uuid, context);
        try {
          this.pendingReceipts!.add(uuid);
        } catch (error) {
          this.fault('message-receipt', `the receipt of message ${uuid} could not be stored: ${errorText(error)}; sending it anyway`, { error });
        }
        this.sendReceipt(uuid);
      },
    };
  }

  private sendReceipt(uuid: string): void {
    const forget = () => {
      try {
        this.pendingReceipts?.remove(uuid);
      } catch (error) {
        this.log.warn({ uuid, err: error }, 'a delivered message receipt could not be removed; it is sent again after a restart');
      }
    };
    runRetried(this.receiptRequest!, { uuid }, { random: this.random, retry: this.retry, signal: this.receipts.signal }).then(
      (answer) => {
        forget();
        if (answer.outcome === 'refused') this.fault('message-receipt', `the server refused the receipt of message ${uuid}: ${answer.error ?? `HTTP ${answer.status}`}${statusText(answer.body)}`);
      },
      (error) => {
        if (this.receipts.signal.aborted) this.log.info({ uuid }, 'device closed before the server took the receipt of a message order; sent after the next start');
        else this.fault('message-receipt', `the receipt of message ${uuid} failed: ${errorText(error)}`, { error });
      },
    );
  }

  private scheduleShipping(): void {
    // Before start() the shipper keeps the records; close() hands over the last ones itself.
    if (this.shipScheduled || !this.actor) return;
    this.shipScheduled = true;
    setImmediate(() => {
      this.shipScheduled = false;
      if (!this.stopped) this.actor?.send({ type: 'LOGS' });
    });
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    if (!this.started) return;
    const deadline = Date.now() + timeoutMs;
    const spool = this.spool!;
    this.actor?.send({ type: 'FLUSH' });
    // Nothing to wait for without a link: the spool keeps the values for the next start.
    await this.until(
      () => this.executing.size === 0 && (this.transport === 'none' || (spool.pendingValues + spool.batchedValues === 0 && this.shipper.size + this.logsOnTheirWay() === 0)),
      deadline,
    );
    this.actor?.send({ type: 'STOP' });
    await this.until(() => this.connection === 'closed' || this.connection === 'disabled' || !this.actor, Math.min(deadline, Date.now() + 5_000));
    this.stopped = true;
    clearTimeout(this.restartTimer);
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
    // Stopping the actor stops every order: their handlers' signals abort, `wait` orders end.
    this.actor?.stop();
    this.actor = undefined;
    const closed = new Error('device is closed');
    for (const w of [...this.configWaiters, ...this.declareWaiters, ...this.baobWaiters]) w.reject(closed);
    this.receipts.abort(closed);
    this.client?.close();
    try {
      await spool.close(); // rejects push() calls waiting for room
    } finally {
      this.executed?.close();
      this.baobStore?.close();
      this.db?.close();
    }
  }

  /** Resolves when `done()` holds (checked whenever a machine reports something) or at `deadline` (unix ms). */
  private until(done: () => boolean, deadline: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!done() && Date.now() < deadline) return;
        clearTimeout(timer);
        this.changes.off('change', check);
        resolve();
      };
      const timer = setTimeout(check, Math.max(0, deadline - Date.now()));
      this.changes.on('change', check);
    });
  }
}

/** ": <text>" from a `{status: "<text>"}` error body (spec §9), if there is one. */
function statusText(body: unknown): string {
  const text = (body as { status?: unknown } | undefined)?.status;
  return typeof text === 'string' && text ? `: ${text}` : typeof body === 'string' && body ? `: ${body.slice(0, 100)}` : '';
}

/** An inspector that throws must not take the machines down with it (nor the other inspectors). */
function guardInspector(inspectors: NonNullable<NgttDeviceOptions['inspect']>[]): ((event: InspectionEvent) => void) | undefined {
  if (inspectors.length === 0) return undefined;
  return (event) => {
    for (const inspect of inspectors) {
      try {
        if (typeof inspect === 'function') inspect(event);
        else inspect.next?.(event);
      } catch {
        // Development tooling only.
      }
    }
  };
}

