/**
 * Shipping the device software's pino logs to the server (spec §7), in every form the docs show,
 * against the reference server over real mutual TLS: the server must report the records.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { NgttDevice } from '../../src/device/ngtt-device.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { makePki, startTestServer, type TestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-logship-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const server = await startTestServer(pki, { adminPort: null });
t.teardown(() => server.close());
let seq = 0;

async function device(deviceId: string, ngtt = true, on: { ngttPort: number; httpsPort: number } = server): Promise<NgttDevice> {
  return new NgttDevice({
    host: '127.0.0.1',
    ngttPort: on.ngttPort,
    httpsPort: on.httpsPort,
    timings: { backoff: { baseMs: 50, maxMs: 200 } },
    ca: pki.ca.cert,
    ...(await pki.device(deviceId)),
    ngtt,
    spoolPath: join(dir, `spool-${++seq}.db`),
    handlers: { onRead: () => 0, onWrite: () => {} },
    logs: { maxBatchAgeMs: 20 },
  });
}

/** The messages the server stored for the device, and the count it reports. */
async function received(s: TestServer, deviceId: string): Promise<{ messages: unknown[]; reported: number }> {
  const logs = await s.store.readLogs(deviceId);
  return { messages: logs.map((l) => l.message), reported: s.counters(deviceId).logRecords };
}

/** A destination that keeps what it is given (stands in for stdout). */
function capture(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { stream, lines };
}

t.test('device.logger(): records go to the other destination and to the server', async (t) => {
  const d = await device('dev-logger');
  d.start();
  t.teardown(() => d.close({ timeoutMs: 2000 }));
  const out = capture();
  const log = d.logger({ level: 'debug' }, out.stream);
  log.debug('valve checked');
  log.info({ pressure: 2.5 }, 'burner on');
  log.trace('below the level: neither written nor shipped');
  await until(async () => (await received(server, 'dev-logger')).reported === 2, 'the server to report two records');
  t.same((await received(server, 'dev-logger')).messages, ['valve checked', 'burner on {"pressure":2.5}']);
  t.match(await server.store.readLogs('dev-logger'), [{ level: 10 }, { level: 20, service: 'device' }]);
  await until(() => out.lines.length === 2, 'both lines written to the other destination');
  t.match(JSON.parse(out.lines[1]!), { msg: 'burner on', pressure: 2.5 });
});

t.test('pino(device.logStream()) alone, and pino(options, multistream) ship records', async (t) => {
  const d = await device('dev-forms');
  d.start();
  t.teardown(() => d.close({ timeoutMs: 2000 }));
  pino(d.logStream()).info('lone destination');
  const out = capture();
  pino({ base: { service: 'boiler' } }, pino.multistream([{ stream: out.stream }, { stream: d.logStream() }])).warn('two destinations');
  await until(async () => (await received(server, 'dev-forms')).reported === 2, 'the server to report both records');
  t.match(await server.store.readLogs('dev-forms'), [
    { message: 'lone destination', level: 20 },
    { message: 'two destinations', level: 30, service: 'boiler' },
  ]);
  t.equal(out.lines.length, 1);
});

t.test('records logged before start() wait for it; records logged just before close() are sent', async (t) => {
  const d = await device('dev-edges');
  const log = d.logger({}, null);
  log.info('before start');
  d.start();
  await until(async () => (await received(server, 'dev-edges')).reported === 1, 'the early record');
  log.info('last words');
  await d.close({ timeoutMs: 2000 });
  await until(async () => (await received(server, 'dev-edges')).reported === 2, 'the record logged right before close()');
  t.same((await received(server, 'dev-edges')).messages, ['before start', 'last words']);
});

t.test('over HTTPS (NGTT off) the same logger ships through PUT /v1/device/device_logs', async (t) => {
  const d = await device('dev-https-logs', false);
  d.start();
  t.teardown(() => d.close({ timeoutMs: 2000 }));
  d.logger({}, null).error(new Error('sensor lost'), 'read failed');
  await until(async () => (await received(server, 'dev-https-logs')).reported === 1, 'the record over HTTPS');
  t.match(await server.store.readLogs('dev-https-logs'), [{ message: 'read failed', level: 40, exception_text: /Error: sensor lost/ }]);
});

t.test('LOGS written to a connection that dies before the server reads them are sent again after the reconnect, once', async (t) => {
  const proxy = await FaultProxy.start(server.ngttPort);
  t.teardown(() => proxy.close());
  const d = await device('dev-cut-logs', true, { ngttPort: proxy.port, httpsPort: server.httpsPort });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 2000 }));
  const log = d.logger({}, null);
  log.info('before the cut');
  await until(() => d.status().logs.stored === 1, 'the first record to be stored');
  // The proxy stops forwarding: what the device writes now reaches its kernel, never the server.
  proxy.stallAll();
  const sent = d.status().bytesSent;
  log.warn('written into the dying connection');
  await until(() => d.status().bytesSent > sent, 'the LOGS frame to leave the device');
  t.match(d.status().logs, { stored: 1, buffered: 1 }, 'written, but no receipt: still held');
  proxy.cutAll();
  await until(() => d.status().logs.stored === 2, 'the receipt after the reconnect');
  t.match(d.status().logs, { stored: 2, buffered: 0, dropped: 0, refused: 0 });
  t.same(
    (await server.store.readLogs('dev-cut-logs')).map((r) => r.message),
    ['before the cut', 'written into the dying connection'],
    'every record stored, once',
  );
  t.ok(proxy.stats.connections >= 2, 'it took a second connection');
});

t.test('a batch the server read but could not store is held by the device and stored once after the reconnect', async (t) => {
  const own = await startTestServer(pki, { adminPort: null });
  t.teardown(() => own.close());
  const ingest = own.store.ingest.bind(own.store);
  let failures = 0;
  own.store.ingest = async (deviceId, uploads) => {
    if (uploads.logs?.length && failures++ === 0) throw new Error('disk full');
    return ingest(deviceId, uploads);
  };
  const d = await device('dev-store-fails', true, own);
  d.start();
  t.teardown(() => d.close({ timeoutMs: 2000 }));
  d.logger({}, null).error('while the disk was full');
  await until(() => d.status().logs.stored === 1, 'the receipt after the reconnect');
  t.ok(own.logs.some((l) => /storing uploads failed/.test(String(l.msg))), 'the store did fail');
  // The gateway also held the batch it read (for clients that send no receipt PING) and stored it once the store was back.
  await until(() => own.logs.some((l) => l.msg === 'held log batches stored'), 'the gateway to store what it held');
  t.same(
    (await own.store.readLogs('dev-store-fails')).map((r) => r.message),
    ['while the disk was full'],
    'stored once: the resent batch is known by its content',
  );
});
