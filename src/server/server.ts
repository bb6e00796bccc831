/** startServer: the NGTT listener, the HTTPS device API and the admin API over one Store. */
import { isIP } from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { DEFAULT_MAX_FRAME_LENGTH, parseSectionsStrict } from '../protocol/index.js';
import { createAdminApi } from './admin-api.js';
import { DeviceRegistry, newCounters, type ConnectedDevice, type DeviceCounters } from './device-registry.js';
import { createHttpsApi } from './https-api.js';
import { createServerMetrics, loadPromClient, type ServerMetrics } from './metrics.js';
import { Admission, DEFAULT_ADMISSION, type AdmissionLimits, type AdmissionStats } from './admission.js';
import { NgttListener, type ServerTlsOptions } from './listener.js';
import { trustedProxyList } from './proxy-certificate.js';
import { createMemoryStore, openSqliteStore, type Store } from './store/index.js';

export interface ServerOptions {
  /** The CA that device certificates must chain to, and the server's certificate and key (PEM). */
  tls: ServerTlsOptions;
  /** Address of the device ports (NGTT and HTTPS). Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. Default 2405. */
  ngttPort?: number;
  /** Default 8443. */
  httpsPort?: number;
  /** Default 8444; null turns the admin API off. */
  adminPort?: number | null;
  /** Default 127.0.0.1. Any other address requires adminToken. */
  adminHost?: string;
  /** Required as `Authorization: Bearer <token>` on the admin API when given. */
  adminToken?: string;
  /** Default: SQLite in dataDir, or in memory when neither is given. */
  store?: Store;
  /** Folder for the SQLite file (ngtt.db) when no store is given. */
  dataDir?: string;
  /** For the store opened here (no `store` given): data batches per device remembered to recognise a re-sent one. Default 256. */
  dedupeWindow?: number;
  /** Unacknowledged orders per device. Default 4. */
  window?: number;
  /** Default 16 MiB (frames and HTTP bodies). */
  maxFrameLength?: number;
  /** Largest BAOB a device may upload or the operator publish, bytes. Default 16 MiB. */
  maxBaobBytes?: number;
  /**
   * TLS-terminating proxies (IP addresses or CIDR ranges) whose `X-SSL-Client-Certificate`
   * header the HTTPS device API believes, after verifying the certificate against `tls.ca`.
   * Default none: the header is ignored from everyone.
   */
  trustedProxies?: string[];
  /**
   * Counters of a device that is not connected are forgotten once it has not been seen for this
   * long (ms). Default 86 400 000 (a day). Totals in /metrics keep counting them.
   */
  counterRetentionMs?: number;
  /** A device silent this long is disconnected. Default 150 000 (spec §5). */
  idleTimeoutMs?: number;
  /**
   * Admission control of each device port, NGTT and HTTPS (admission.ts; defaults in
   * DEFAULT_ADMISSION: 100 000 connections, 2 000 in the TLS handshake, 100 of them per source,
   * 10 s handshake timeout, never more than idleTimeoutMs).
   */
  admission?: Partial<AdmissionLimits>;
  logger?: Logger;
}

export interface ConnectedDeviceStatus extends ConnectedDevice {
  counters: DeviceCounters;
}

export interface NgttServer {
  readonly ngttPort: number;
  readonly httpsPort: number;
  /** null when the admin API is off. */
  readonly adminPort: number | null;
  readonly store: Store;
  /** Validates (PayloadError when malformed) and enqueues; resolves to the order id. */
  enqueueOrder(deviceId: string, sections: unknown): Promise<string>;
  connectedDevices(): ConnectedDeviceStatus[];
  /** The NGTT port's connections, handshakes and refusals (admission control). */
  readonly ngttStats: AdmissionStats;
  /** The same for the HTTPS device port. */
  readonly httpsStats: AdmissionStats;
  counters(deviceId: string): DeviceCounters;
  /** Closes listeners and connections (unsettled orders requeued), then a store it opened itself. */
  close(): Promise<void>;
}

/** Options that cannot work together; the caller's mistake. */
export class ServerConfigError extends Error {
  override name = 'ServerConfigError';
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const isLoopback = (host: string) => LOOPBACK.has(host) || (isIP(host) === 4 && host.startsWith('127.'));

export async function startServer(options: ServerOptions): Promise<NgttServer> {
  const host = options.host ?? '127.0.0.1';
  const adminHost = options.adminHost ?? '127.0.0.1';
  const adminPort = options.adminPort === undefined ? 8444 : options.adminPort;
  if (adminPort !== null && !isLoopback(adminHost) && !options.adminToken) {
    throw new ServerConfigError(`the admin API on ${adminHost} (not loopback) needs an admin token`);
  }
  const window = options.window ?? 4;
  if (!Number.isInteger(window) || window < 1 || window > 0x7fff) throw new ServerConfigError(`window must be 1..32767, not ${window}`);
  const maxFrameLength = options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
  const maxBaobBytes = options.maxBaobBytes ?? DEFAULT_MAX_FRAME_LENGTH;
  if (!Number.isInteger(maxBaobBytes) || maxBaobBytes < 1) throw new ServerConfigError(`maxBaobBytes must be a positive integer, not ${maxBaobBytes}`);
  try {
    trustedProxyList(options.trustedProxies ?? []);
  } catch (e) {
    throw new ServerConfigError((e as Error).message);
  }
  const counterRetentionMs = options.counterRetentionMs ?? 86_400_000;
  if (!Number.isInteger(counterRetentionMs) || counterRetentionMs < 1) throw new ServerConfigError(`counterRetentionMs must be a positive integer, not ${counterRetentionMs}`);
  const idleTimeoutMs = options.idleTimeoutMs ?? 150_000;
  const admission = admissionLimits(options.admission, idleTimeoutMs);
  // Metrics are served by the admin API, with prom-client when it is installed (optional peer);
  // loaded before anything is opened, so a broken install leaves nothing behind.
  const prom = adminPort === null ? null : await loadPromClient();
  const logger = options.logger ?? pino({ level: process.env.NGTT_LOG_LEVEL ?? 'info' });
  const ownStore = !options.store;
  const dedupeWindow = options.dedupeWindow;
  if (dedupeWindow !== undefined && (!Number.isInteger(dedupeWindow) || dedupeWindow < 1)) throw new ServerConfigError(`dedupeWindow must be a positive integer, not ${dedupeWindow}`);
  const store = options.store ?? (options.dataDir ? openSqliteStore(join(options.dataDir, 'ngtt.db'), { dedupeWindow }) : createMemoryStore({ dedupeWindow }));
  const registry = new DeviceRegistry();

  let ordersEnqueued = 0;
  const enqueueOrder = async (deviceId: string, sections: unknown): Promise<string> => {
    if (typeof deviceId !== 'string' || !deviceId) throw new TypeError('deviceId must be a non-empty string');
    const id = await store.enqueueOrder(deviceId, parseSectionsStrict(sections));
    ordersEnqueued++;
    return id;
  };

  const metrics: ServerMetrics | null = prom
    ? createServerMetrics(prom, {
        registry,
        ports: () => ({ ngtt: listener.stats, https: httpsAdmission.stats }),
        admission,
        store,
        ordersEnqueued: () => ordersEnqueued,
        heldLogs: () => listener.heldLogs,
        logger,
      })
    : null;
  /** What the protocol code writes to: timed and counted when there are metrics. */
  const served: Store = metrics ? metrics.instrument(store) : store;

  const listener: NgttListener = new NgttListener({
    tls: options.tls,
    host,
    port: options.ngttPort ?? 2405,
    store: served,
    registry,
    window,
    idleTimeoutMs,
    maxFrameLength,
    admission,
    logger: logger.child({ component: 'ngtt' }),
  });
  const httpsAdmission = new Admission(admission, logger.child({ component: 'https' }));
  const https = createHttpsApi({
    tls: options.tls,
    store: served,
    registry,
    logger: logger.child({ component: 'https' }),
    bodyLimit: maxFrameLength,
    maxBaobBytes,
    admission: httpsAdmission,
    trustedProxies: options.trustedProxies,
  });
  const admin =
    adminPort === null
      ? null
      : createAdminApi({ store: served, registry, metrics, logger: logger.child({ component: 'admin' }), token: options.adminToken, bodyLimit: maxFrameLength, maxBaobBytes, enqueueOrder });

  const started: (() => Promise<unknown>)[] = [];
  // Per-device counters are swept at most once a minute (sooner when the retention is short).
  const sweep = setInterval(() => registry.evictIdle(Date.now() - counterRetentionMs), Math.min(counterRetentionMs, 60_000)).unref();
  const closeStarted = async () => {
    clearInterval(sweep);
    for (const close of started.reverse()) await close().catch(() => {});
    if (ownStore) await store.close().catch(() => {});
  };
  let ngttPort: number;
  let httpsPort: number;
  let boundAdminPort: number | null = null;
  try {
    ngttPort = await listener.listen();
    started.push(() => listener.close());
    await https.listen({ host, port: options.httpsPort ?? 8443 });
    started.push(() => https.close());
    httpsPort = portOf(https.server.address());
    if (admin) {
      await admin.listen({ host: adminHost, port: adminPort! });
      started.push(() => admin.close());
      boundAdminPort = portOf(admin.server.address());
    }
  } catch (e) {
    await closeStarted();
    throw e;
  }
  logger.info({ host, ngttPort, httpsPort, adminHost, adminPort: boundAdminPort, window }, 'NGTT server listening');

  let closing: Promise<void> | null = null;
  return {
    ngttPort,
    httpsPort,
    adminPort: boundAdminPort,
    store: served,
    enqueueOrder,
    ngttStats: listener.stats,
    httpsStats: httpsAdmission.stats,
    connectedDevices: () => registry.connected().map((d) => ({ ...d, counters: { ...(registry.peekCounters(d.deviceId) ?? newCounters()) } })),
    counters: (deviceId) => ({ ...(registry.peekCounters(deviceId) ?? newCounters()) }),
    close: () => (closing ??= closeStarted()),
  };
}

function admissionLimits(given: Partial<AdmissionLimits> = {}, idleTimeoutMs: number): AdmissionLimits {
  const limits = { ...DEFAULT_ADMISSION, ...given };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) throw new ServerConfigError(`admission.${name} must be a positive integer, not ${value}`);
  }
  // A handshake may not take longer than a connected device may stay silent.
  return { ...limits, handshakeTimeoutMs: Math.min(limits.handshakeTimeoutMs, idleTimeoutMs) };
}

function portOf(address: string | import('node:net').AddressInfo | null): number {
  if (!address || typeof address === 'string') throw new Error(`unexpected server address ${address}`);
  return address.port;
}
