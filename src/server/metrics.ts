/**
 * Prometheus metrics for `GET /metrics` on the admin listener, through prom-client, an optional
 * peer dependency loaded only when the server starts with the admin API (without it, /metrics
 * answers 501 with the command that installs it). Most values are read when scraped from what
 * the server counts anyway (listener stats, per-device counter totals, the store's open orders);
 * only store commit times and ingest volumes are recorded as they happen.
 */
import type { Logger } from 'pino';
import type { DeviceCounters, DeviceRegistry } from './device-registry.js';
import type { AdmissionLimits, AdmissionStats } from './admission.js';
import type { Store, Uploads } from './store/index.js';

type PromClient = typeof import('prom-client');

export const PROM_CLIENT_INSTALL = 'npm install prom-client@15';

/** prom-client, or null when it is not installed (an optional peer). Other failures throw. */
export async function loadPromClient(specifier = 'prom-client'): Promise<PromClient | null> {
  try {
    const loaded = (await import(specifier)) as PromClient & { default?: PromClient };
    // CommonJS: the named exports may only be on `default`, depending on the loader.
    return loaded.Registry ? loaded : loaded.default!;
  } catch (e) {
    // prom-client itself missing (not a package it needs). Some loaders drop the error code.
    const err = e as NodeJS.ErrnoException;
    const notFound = err?.code === 'ERR_MODULE_NOT_FOUND' || /^Cannot find (package|module) /.test(err?.message ?? '');
    if (notFound && err.message.includes(`'${specifier}'`)) return null;
    throw e;
  }
}

export interface ServerMetricsSources {
  registry: DeviceRegistry;
  /** The device ports' admission control. */
  ports(): Record<'ngtt' | 'https', AdmissionStats>;
  admission: AdmissionLimits;
  store: Store;
  /** Orders enqueued since start (admin API and NgttServer.enqueueOrder). */
  ordersEnqueued(): number;
  /** Log batches received but not stored yet (held-logs.ts): held now; stored later and dropped since start. */
  heldLogs(): { size: number; stored: number; dropped: number };
  logger: Logger;
}

export interface ServerMetrics {
  readonly contentType: string;
  render(): Promise<string>;
  /** The store wrapped so that every ingest is timed and counted. */
  instrument(store: Store): Store;
}

const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createServerMetrics(prom: PromClient, s: ServerMetricsSources): ServerMetrics {
  const register = new prom.Registry();
  // Process and runtime: event-loop lag, open file descriptors, memory, GC.
  prom.collectDefaultMetrics({ register });

  const gauge = (name: string, help: string, read: () => number) =>
    new prom.Gauge({ name, help, registers: [register], collect() { this.set(read()); } });
  /** A counter whose total is kept elsewhere; read at scrape time. */
  const total = (name: string, help: string, read: () => number) =>
    new prom.Counter({ name, help, registers: [register], collect() { this.reset(); this.inc(read()); } });
  /** Per device port (`port` label), and by a second label when `by` is given. */
  const perPort = (kind: 'gauge' | 'counter', name: string, help: string, read: (stats: AdmissionStats) => number | Map<string, number>, by?: string) => {
    const Metric = kind === 'gauge' ? prom.Gauge : prom.Counter;
    return new Metric({
      name,
      help,
      labelNames: by ? ['port', by] : ['port'],
      registers: [register],
      collect(this: { reset(): void; inc(labels: Record<string, string>, n: number): void }) {
        this.reset();
        for (const [port, stats] of Object.entries(s.ports())) {
          const value = read(stats);
          if (typeof value === 'number') this.inc({ port }, value);
          else for (const [label, n] of value) this.inc({ port, [by!]: label }, n);
        }
      },
    });
  };

  // ---- connections and admission (both device ports) ----
  gauge('ngtt_connected_devices', 'Devices with a live NGTT session', () => s.registry.connectedCount);
  perPort('gauge', 'ngtt_tcp_connections', 'TCP connections on a device port, handshaking ones included', (p) => p.connections);
  perPort('gauge', 'ngtt_tls_handshakes_pending', 'Connections of a device port still in the TLS handshake', (p) => p.pendingHandshakes);
  perPort('counter', 'ngtt_tls_handshakes_completed_total', 'TLS handshakes completed', (p) => p.handshakesCompleted);
  perPort('counter', 'ngtt_tls_handshakes_failed_total', 'TLS handshakes failed or timed out, by error code', (p) => p.handshakesFailed, 'code');
  perPort('counter', 'ngtt_connections_refused_total', 'Connections refused by admission control, by limit', (p) => p.refused, 'reason');
  new prom.Gauge({
    name: 'ngtt_admission_limit',
    help: 'Configured admission limits of each device port',
    labelNames: ['limit'],
    registers: [register],
    collect() {
      for (const [limit, value] of Object.entries(s.admission)) this.set({ limit }, value);
    },
  });

  // ---- orders ----
  const countOpenOrders = s.store.countOpenOrders?.bind(s.store);
  if (countOpenOrders) {
    new prom.Gauge({
      name: 'ngtt_orders',
      help: 'Orders waiting in the store: queued, or in flight (sent over NGTT, not yet settled)',
      labelNames: ['state'],
      registers: [register],
      async collect() {
        try {
          const open = await countOpenOrders();
          this.set({ state: 'queued' }, open.queued);
          this.set({ state: 'in-flight' }, open.inFlight);
        } catch (e) {
          s.logger.warn({ err: e }, 'metrics: could not count open orders');
        }
      },
    });
  }
  // Summed over every device once per scrape, not once per metric.
  let scrapeTotals: DeviceCounters | null = null;
  const totals = () => (scrapeTotals ??= s.registry.totals());
  total('ngtt_orders_enqueued_total', 'Orders enqueued', s.ordersEnqueued);
  total('ngtt_orders_sent_total', 'ORDER frames sent (redeliveries included)', () => totals().ordersSent);
  total('ngtt_orders_confirmed_total', 'Orders confirmed by devices', () => totals().ordersConfirmed);
  total('ngtt_orders_rejected_total', 'Orders rejected by devices', () => totals().ordersRejected);
  total('ngtt_orders_delivered_total', 'Orders handed out by HTTPS polls', () => totals().ordersDelivered);

  // ---- uploads ----
  const ingestBatches = new prom.Counter({ name: 'ngtt_ingest_batches_total', help: 'Upload batches stored, by kind', labelNames: ['kind'], registers: [register] });
  const ingestValues = new prom.Counter({ name: 'ngtt_ingest_values_total', help: 'Pathpoint values stored', registers: [register] });
  const ingestLogRecords = new prom.Counter({ name: 'ngtt_ingest_log_records_total', help: 'Log records stored', registers: [register] });
  const commitSeconds = new prom.Histogram({ name: 'ngtt_store_commit_seconds', help: 'Time of one store write of uploads (one transaction, fsync included)', buckets: COMMIT_BUCKETS, registers: [register] });
  total('ngtt_data_batches_rejected_total', 'DATA_STREAMs and HTTPS data posts rejected as malformed', () => totals().dataBatchesRejected);
  total('ngtt_log_batches_dropped_total', 'Malformed LOGS frames dropped', () => totals().logBatchesDropped);
  gauge('ngtt_held_log_batches', 'Log batches received while the store failed, held in memory until it is back', () => s.heldLogs().size);
  total('ngtt_held_log_batches_stored_total', 'Held log batches stored once the store was back', () => s.heldLogs().stored);
  total('ngtt_held_log_batches_dropped_total', 'Log batches lost because the hold was full (10 000 batches)', () => s.heldLogs().dropped);
  total('ngtt_protocol_errors_total', 'Connections closed for a protocol error', () => totals().protocolErrors);
  total('ngtt_pings_total', 'PINGs answered', () => totals().pings);
  total('ngtt_device_http_requests_total', 'Requests on the HTTPS device API', () => totals().httpRequests);

  const recordIngest = (uploads: Uploads, seconds: number) => {
    commitSeconds.observe(seconds);
    const data = uploads.data ?? [];
    const logs = uploads.logs ?? [];
    if (data.length) ingestBatches.inc({ kind: 'data' }, data.length);
    if (logs.length) ingestBatches.inc({ kind: 'logs' }, logs.length);
    let values = 0;
    for (const batch of data) for (const series of batch.series) values += series.values.length;
    if (values) ingestValues.inc(values);
    let records = 0;
    for (const batch of logs) records += batch.length;
    if (records) ingestLogRecords.inc(records);
  };

  return {
    contentType: register.contentType,
    render: async () => {
      scrapeTotals = null;
      return register.metrics();
    },
    instrument(store) {
      const original = store.ingest;
      const ingest = async (deviceId: string, uploads: Uploads) => {
        const started = process.hrtime.bigint();
        await original.call(store, deviceId, uploads);
        recordIngest(uploads, Number(process.hrtime.bigint() - started) / 1e9);
      };
      return new Proxy(store, {
        get(target, property) {
          // Timed unless someone replaced ingest on the store since (a test wrapping it calls ours).
          if (property === 'ingest' && target.ingest === original) return ingest;
          const value = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    },
  };
}
