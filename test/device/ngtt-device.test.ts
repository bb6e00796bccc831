/**
 * NgttDevice against the reference server, over real mutual TLS on 127.0.0.1, certificates made
 * here. Servers are restarted on the same ports and data dir to simulate outages.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { NgttDevice, type NgttDeviceOptions } from '../../src/device/ngtt-device.js';
import type { PathpointScalar } from '../../src/protocol/index.js';
import { startServer, type NgttServer } from '../../src/server/index.js';
import { SqliteSpool } from '../../src/device/spool.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { makePki, readSection } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-device-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
let seq = 0;

interface Ports {
  ngttPort?: number;
  httpsPort?: number;
}

async function server(dataDir: string, ports: Ports = {}): Promise<NgttServer> {
  return startServer({
    tls: { ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key },
    ngttPort: ports.ngttPort ?? 0,
    httpsPort: ports.httpsPort ?? 0,
    adminPort: null,
    dataDir,
    logger: pino({ enabled: false }),
  });
}

async function device(s: Ports, options: Partial<NgttDeviceOptions> & { deviceId: string }) {
  const { deviceId, ...rest } = options;
  const cert = await pki.device(deviceId);
  const d = new NgttDevice({
    host: '127.0.0.1',
    ca: pki.ca.cert,
    ...cert,
    ngttPort: s.ngttPort,
    httpsPort: s.httpsPort,
    spoolPath: join(dir, `spool-${++seq}.db`),
    handlers: { onRead: () => 1, onWrite: () => {} },
    pollIntervalMs: 50,
    timings: { backoff: { baseMs: 50, maxMs: 200 } },
    upload: { maxBatchAgeMs: 20 },
    logs: { maxBatchAgeMs: 20 },
    retry: { baseMs: 50, maxMs: 200 },
    ...rest,
  });
  return d;
}

async function storedValues(s: NgttServer, deviceId: string, path: string): Promise<PathpointScalar[]> {
  const rows = await s.store.readData(deviceId, { path, limit: 1_000_000 });
  return rows.flatMap((r) => r.values.map((v) => v[1] as PathpointScalar));
}

const orderState = async (s: NgttServer, id: string) => (await s.store.getOrder(id))?.state;

t.test('NGTT: an order is pushed, executed and acknowledged; the read value is uploaded', async (t) => {
  const s = await server(join(dir, `srv-${++seq}`));
  t.teardown(() => s.close());
  const d = await device(s, { deviceId: 'dev-fast', ngtt: true, handlers: { onRead: (path) => (path === 'W1' ? 42 : 0), onWrite: () => {} } });
  const transports: string[] = [];
  d.on('transport', (x) => transports.push(x));
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'NGTT connected');
  await until(() => s.connectedDevices().length === 1, 'the server to see the device');

  const done = new Promise((resolve) => d.on('order', (e) => e.phase === 'done' && resolve(e)));
  const id = await s.enqueueOrder('dev-fast', readSection('W1'));
  t.match(await within(done, 'the order to be done'), { phase: 'done', id, via: 'ngtt', outcome: 'acked', executed: true });
  await until(async () => (await orderState(s, id)) === 'confirmed', 'ORDER_CONFIRM at the server'); // latency: bench/latency.ts
  await until(async () => (await storedValues(s, 'dev-fast', 'W1')).length === 1, 'the read value at the server');
  t.same(await storedValues(s, 'dev-fast', 'W1'), [42]);

  await d.push({ path: 'W2', value: 7 });
  await until(() => d.status().values.confirmed === 2, 'the pushed value to be confirmed');
  t.same(await storedValues(s, 'dev-fast', 'W2'), [7]);
  t.match(d.status(), {
    deviceId: 'dev-fast',
    connection: 'authenticated',
    transport: 'ngtt',
    orders: { received: 1, executing: 0, acked: 1, rejected: 0 },
    values: { pushed: 2, confirmed: 2, pending: 0, rejected: 0 },
  });
  t.ok(d.status().bytesSent > 0 && d.status().bytesReceived > 0);
  t.same(transports, ['ngtt']);
});

t.test('a connection cut while the order runs: redelivered, acknowledged, not executed twice', async (t) => {
  const dataDir = join(dir, `srv-${++seq}`);
  let s = await server(dataDir);
  const ports = { ngttPort: s.ngttPort, httpsPort: s.httpsPort };
  t.teardown(() => s.close());
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reads = 0;
  const d = await device(ports, {
    deviceId: 'dev-cut',
    ngtt: true,
    handlers: {
      onRead: async () => {
        reads++;
        await gate;
        return 5;
      },
      onWrite: () => {},
    },
  });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'NGTT connected');
  const executing = new Promise((resolve) => d.on('order', (e) => e.phase === 'executing' && resolve(e)));
  const id = await s.enqueueOrder('dev-cut', readSection('R1'));
  await within(executing, 'the order to run');

  await s.close(); // the in-flight order goes back to the queue
  s = await server(dataDir, ports);
  release();
  await until(async () => (await orderState(s, id)) === 'confirmed', 'the redelivered order to be confirmed', 10_000);
  t.equal(reads, 1, 'executed once');
  t.ok((await s.store.getOrder(id))!.deliveries >= 2, 'it was delivered again');
  await until(async () => (await storedValues(s, 'dev-cut', 'R1')).length === 1, 'the reading to arrive');
});

t.test('10 000 values pushed while the server is down all arrive exactly once', async (t) => {
  const dataDir = join(dir, `srv-${++seq}`);
  let s = await server(dataDir);
  const ports = { ngttPort: s.ngttPort, httpsPort: s.httpsPort };
  const d = await device(ports, { deviceId: 'dev-down', ngtt: true, upload: { maxBatchAgeMs: 20, maxBatchValues: 500 } });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'NGTT connected');
  await s.close();
  await until(() => d.status().connection !== 'authenticated', 'the device to notice');

  const pushes = [];
  for (let i = 0; i < 10_000; i++) pushes.push(d.push({ path: 'N1', value: i, timestamp: 1_700_000_000_000 + i }));
  await Promise.all(pushes);
  t.equal(d.status().values.pending, 10_000, 'all in the spool');

  s = await server(dataDir, ports);
  t.teardown(() => s.close());
  await until(() => d.status().values.confirmed === 10_000, 'all confirmed', 20_000);
  const stored = await storedValues(s, 'dev-down', 'N1');
  t.equal(stored.length, 10_000);
  t.equal(new Set(stored).size, 10_000, 'no duplicates');
  t.equal(d.status().values.pending, 0);
});

t.test('a device restarted on the same spool file loses nothing: batches on the wire and values not yet batched', async (t) => {
  const dataDir = join(dir, `srv-${++seq}`);
  const s = await server(dataDir);
  t.teardown(() => s.close());
  const ports = { ngttPort: s.ngttPort, httpsPort: s.httpsPort };
  // The first run talks through a link that forwards nothing: its DATA_STREAMs are never answered.
  const stalled = await FaultProxy.start(s.ngttPort);
  t.teardown(() => stalled.close());
  const spoolPath = join(dir, `restart-${++seq}.db`);
  const a = await device({ ...ports, ngttPort: stalled.port }, { deviceId: 'dev-restart', ngtt: true, spoolPath, upload: { maxBatchAgeMs: 60_000, maxBatchValues: 50 } });
  a.start();
  t.teardown(() => a.close({ timeoutMs: 200 }));
  await until(() => a.status().connection === 'authenticated', 'connected through the proxy');
  stalled.stallAll();
  for (let i = 0; i < 500; i++) await a.push({ path: 'P1', value: i, timestamp: 1_700_000_000_000 + i });
  await until(() => a.status().bytesSent > 8 * 50 * 9, 'a window of batches written to the stalled link');
  await a.close({ timeoutMs: 200 });
  const left = SqliteSpool.open(spoolPath);
  t.same([left.unconfirmedBatchIds().length, left.pendingValues], [8, 100], 'both kinds are left: 8 batches sent and unanswered, 100 values in none');
  await left.close();

  const b = await device(ports, { deviceId: 'dev-restart', ngtt: true, spoolPath });
  t.equal(b.start().status().values.pending, 500, 'found in the spool');
  t.teardown(() => b.close({ timeoutMs: 1000 }));
  await until(async () => (await storedValues(s, 'dev-restart', 'P1')).length === 500, 'all values at the server', 10_000);
  t.equal(new Set(await storedValues(s, 'dev-restart', 'P1')).size, 500);
  await until(() => b.status().values.pending === 0, 'the spool to empty');
});

t.test('NGTT off (the default): orders are polled and data posted over HTTPS', async (t) => {
  const s = await server(join(dir, `srv-${++seq}`));
  t.teardown(() => s.close());
  let reads = 0;
  const d = await device(s, { deviceId: 'dev-https', handlers: { onRead: () => ++reads, onWrite: () => {} } });
  const logger = pino({ base: { service: 'boiler' } }, d.logStream());
  logger.info('logged before start()'); // kept until the logs machine asks for it
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  t.equal(d.status().connection, 'disabled');
  const config = await within(d.getConfiguration(), 'the configuration');
  t.equal(config.device_id, 'dev-https');
  await d.declarePathpoints([{ path: 'W1', storage_level: 1 }]);
  t.same(await s.store.readPathpointDeclarations('dev-https'), [{ path: 'W1', storage_level: 1 }]);

  const id = await s.enqueueOrder('dev-https', readSection('W1'));
  await until(async () => (await storedValues(s, 'dev-https', 'W1')).length === 1, 'the polled read to be uploaded');
  t.equal(await orderState(s, id), 'delivered');
  t.equal(reads, 1);
  await d.push([{ path: 'W3', values: [[1, 1], [2, 2]] }]);
  await until(() => d.status().values.confirmed === 3, 'posted');
  t.equal(s.connectedDevices().length, 0, 'no NGTT connection');

  logger.info('burner on');
  await until(async () => (await s.store.readLogs('dev-https')).length === 2, 'the shipped logs');
  t.match(await s.store.readLogs('dev-https'), [
    { service: 'boiler', message: 'logged before start()', level: 20 },
    { service: 'boiler', message: 'burner on', level: 20 },
  ]);
  t.match(d.status(), { transport: 'https', orders: { received: 1, acked: 1 } });
});

t.test('NGTT down longer than the grace period: HTTPS takes over, then NGTT again', async (t) => {
  const dataDir = join(dir, `srv-${++seq}`);
  // A port with no NGTT listener yet: the first server listens elsewhere.
  const probe = await server(join(dir, `probe-${++seq}`));
  const ngttPort = probe.ngttPort;
  await probe.close();
  let s = await server(dataDir);
  const httpsPort = s.httpsPort;
  const d = await device({ ngttPort, httpsPort }, { deviceId: 'dev-fallback', ngtt: true, graceMs: 150 });
  const transports: string[] = [];
  d.on('transport', (x) => transports.push(x));
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().transport === 'https', 'the fallback to HTTPS');
  await d.push({ path: 'F1', value: 1 });
  await until(async () => (await storedValues(s, 'dev-fallback', 'F1')).length === 1, 'data over HTTPS');
  const polled = await s.enqueueOrder('dev-fallback', readSection('F2'));
  await until(async () => (await orderState(s, polled)) === 'delivered', 'an order polled over HTTPS');

  await s.close();
  s = await server(dataDir, { ngttPort, httpsPort });
  t.teardown(() => s.close());
  await until(() => d.status().transport === 'ngtt', 'NGTT again', 5000);
  const pushed = await s.enqueueOrder('dev-fallback', readSection('F3'));
  await until(async () => (await orderState(s, pushed)) === 'confirmed', 'an order over NGTT');
  await d.push({ path: 'F1', value: 2 });
  await until(async () => (await storedValues(s, 'dev-fallback', 'F1')).length === 2, 'data over NGTT');
  t.same(await storedValues(s, 'dev-fallback', 'F1'), [1, 2], 'nothing lost or doubled');
  t.same(transports.slice(0, 1), ['https']);
  t.equal(transports.at(-1), 'ngtt');
});
