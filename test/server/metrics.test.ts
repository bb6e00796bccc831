/**
 * GET /metrics on the admin listener, scraped over HTTP as Prometheus would (bearer token
 * included): the values follow real activity — a device connecting, orders queued, in flight,
 * confirmed and rejected, uploads stored, handshakes refused and failed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { FrameType } from '../../src/protocol/index.js';
import { createAdminApi } from '../../src/server/admin-api.js';
import { DeviceRegistry } from '../../src/server/device-registry.js';
import { loadPromClient } from '../../src/server/metrics.js';
import { createMemoryStore } from '../../src/server/store/index.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-metrics-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

/** `name{labels} value` lines → value by `name{labels}` (labels as written). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

t.test('metrics follow connections, orders, uploads and refusals', async (t) => {
  const server = await startTestServer(pki, { dataDir: dir, adminToken: 'scrape-token', admission: { maxPendingHandshakesPerSource: 1, handshakeTimeoutMs: 60_000 } });
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${server.adminPort}/metrics`;
  t.equal((await fetch(url)).status, 401, 'the admin token protects /metrics too');
  const scrape = async () => {
    const reply = await fetch(url, { headers: { authorization: 'Bearer scrape-token' } });
    t.equal(reply.status, 200);
    t.match(reply.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    return parse(await reply.text());
  };

  let m = await scrape();
  t.equal(m.get('ngtt_connected_devices'), 0);
  t.equal(m.get('ngtt_orders{state="queued"}'), 0);
  t.equal(m.get('ngtt_admission_limit{limit="maxPendingHandshakesPerSource"}'), 1);
  t.ok(m.has('nodejs_eventloop_lag_seconds'), 'event-loop lag');
  t.ok(m.has('process_open_fds'), 'open file descriptors');
  t.equal(m.get('ngtt_store_commit_seconds_count'), 0);
  t.equal(m.get('ngtt_held_log_batches'), 0, 'no log batch held while the store works');
  t.equal(m.get('ngtt_held_log_batches_dropped_total'), 0);

  await server.enqueueOrder('dev-m', readSection('A'));
  await server.enqueueOrder('dev-m', readSection('B'));
  m = await scrape();
  t.equal(m.get('ngtt_orders{state="queued"}'), 2, 'queued');
  t.equal(m.get('ngtt_orders_enqueued_total'), 2);

  const device = await server.connect('dev-m');
  t.teardown(() => device.destroy());
  device.send(0, FrameType.FETCH_ORDERS);
  const [a, b] = await device.takeOrders(2);
  m = await scrape();
  t.equal(m.get('ngtt_connected_devices'), 1, 'connected');
  t.equal(m.get('ngtt_tls_handshakes_completed_total{port="ngtt"}'), 1);
  t.equal(m.get('ngtt_orders{state="queued"}'), 0);
  t.equal(m.get('ngtt_orders{state="in-flight"}'), 2, 'in flight');
  t.equal(m.get('ngtt_orders_sent_total'), 2);

  device.send(a.tid, FrameType.ORDER_CONFIRM);
  device.send(b.tid, FrameType.ORDER_REJECT, { reason: 'busy' });
  device.send(0x10, FrameType.DATA_STREAM, [{ path: 'T', values: [[1, 1], [2, 2], [3, 3]] }]);
  device.send(0x11, FrameType.DATA_STREAM, [{ path: 'T', values: [[4, 4]] }, { path: 'U', values: [[4, 5]] }]);
  device.send(0x12, FrameType.LOGS, [{ service: 's', when: 1, message: 'm', level: 20 }]);
  await device.takeType(FrameType.DATA_STREAM_CONFIRM, 0x10);
  await device.takeType(FrameType.DATA_STREAM_CONFIRM, 0x11);
  await device.ping();
  await until(async () => (await server.store.readLogs('dev-m')).length === 1, 'the log record stored');
  m = await scrape();
  t.equal(m.get('ngtt_orders{state="in-flight"}'), 0);
  t.equal(m.get('ngtt_orders_confirmed_total'), 1, 'confirmed');
  t.equal(m.get('ngtt_orders_rejected_total'), 1, 'rejected');
  t.equal(m.get('ngtt_ingest_batches_total{kind="data"}'), 2, 'data batches');
  t.equal(m.get('ngtt_ingest_batches_total{kind="logs"}'), 1, 'log batches');
  t.equal(m.get('ngtt_ingest_values_total'), 5, 'values');
  t.equal(m.get('ngtt_ingest_log_records_total'), 1);
  const commits = m.get('ngtt_store_commit_seconds_count')!;
  t.ok(commits >= 1 && commits <= 3, `store commits timed (${commits})`);
  t.equal(m.get('ngtt_store_commit_seconds_bucket{le="+Inf"}'), commits);
  t.ok(m.get('ngtt_store_commit_seconds_sum')! > 0);
  t.ok(m.get('ngtt_pings_total')! >= 1);

  // A source over its handshake limit, and a failed handshake.
  const held = net.connect({ host: '127.0.0.1', port: server.ngttPort, localAddress: '127.0.0.5' });
  held.on('error', () => {});
  t.teardown(() => held.destroy());
  await until(() => server.ngttStats.pendingHandshakes === 1, 'the first stalled connection held');
  const second = net.connect({ host: '127.0.0.1', port: server.ngttPort, localAddress: '127.0.0.5' });
  second.on('error', () => {});
  await new Promise((resolve) => second.once('close', resolve));
  const garbage = net.connect({ host: '127.0.0.1', port: server.ngttPort }, () => garbage.write('GET / HTTP/1.1\r\n\r\n'));
  garbage.on('error', () => {});
  await new Promise((resolve) => garbage.once('close', resolve));
  await until(() => server.ngttStats.handshakesFailed.size > 0, 'the failed handshake counted');
  m = await scrape();
  t.equal(m.get('ngtt_connections_refused_total{port="ngtt",reason="max-handshakes-per-source"}'), 1, 'refusal counted by reason');
  t.equal(m.get('ngtt_tls_handshakes_pending{port="ngtt"}'), 1);
  const failed = [...m].filter(([k]) => k.startsWith('ngtt_tls_handshakes_failed_total{port="ngtt",')).reduce((n, [, v]) => n + v, 0);
  t.equal(failed, 1, 'the failed handshake, by code');

  await device.destroy();
  await until(() => server.connectedDevices().length === 0, 'the device gone');
  m = await scrape();
  t.equal(m.get('ngtt_connected_devices'), 0, 'disconnected');
  t.equal(m.get('ngtt_orders_confirmed_total'), 1, 'totals stay');
});

t.test('without prom-client, /metrics is a 501 that says what to install', async (t) => {
  t.equal(await loadPromClient('prom-client-not-installed-here'), null, 'a missing optional peer is not an error');
  const app = createAdminApi({ store: createMemoryStore(), registry: new DeviceRegistry(), metrics: null, logger: pino({ level: 'silent' }), bodyLimit: 1024, maxBaobBytes: 1024, enqueueOrder: async () => 'x' });
  t.teardown(() => app.close());
  const reply = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(reply.statusCode, 501);
  t.same(reply.json(), { status: 'metrics need prom-client, an optional peer dependency of ngtt that is not installed: npm install prom-client@15' });
});
