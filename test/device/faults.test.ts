/**
 * Fault injection into a real NgttDevice (reference server, real mutual TLS on 127.0.0.1): each
 * fault is contained, shows in status() and as a 'fault' event, and afterwards the runtime still
 * works — orders executed and confirmed, values confirmed, nothing lost or stored twice.
 * (A provided action that throws inside a machine is injected in test/machines/supervisor.test.ts:
 * the machine is restarted with backoff.)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import t from 'tap';
import { type DeviceFault, NgttDevice, type NgttDeviceOptions } from '../../src/device/ngtt-device.js';
import { SqliteSpool } from '../../src/device/spool.js';
import { startServer, type NgttServer } from '../../src/server/index.js';
import { fill, smallDisk, unfill } from '../helpers/disk.js';
import { makePki } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-faults-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
let seq = 0;

async function server(ports: { ngttPort?: number; httpsPort?: number } = {}): Promise<NgttServer> {
  return startServer({
    tls: { ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key },
    ngttPort: ports.ngttPort ?? 0,
    httpsPort: ports.httpsPort ?? 0,
    adminPort: null,
    logger: pino({ enabled: false }),
  });
}

async function device(s: { ngttPort: number; httpsPort: number }, deviceId: string, extra: Partial<NgttDeviceOptions> = {}) {
  const d = new NgttDevice({
    host: '127.0.0.1',
    ca: pki.ca.cert,
    ...(await pki.device(deviceId)),
    ngttPort: s.ngttPort,
    httpsPort: s.httpsPort,
    ngtt: true,
    graceMs: 3_600_000,
    spoolPath: join(dir, `${deviceId}-${++seq}.db`),
    handlers: { onRead: () => 1, onWrite: () => {} },
    timings: { backoff: { baseMs: 20, maxMs: 200 } },
    retry: { baseMs: 20, maxMs: 200 },
    upload: { maxBatchAgeMs: 5, maxBatchValues: 10 },
    ...extra,
  });
  const faults: DeviceFault[] = [];
  d.on('fault', (f) => void faults.push(f));
  return { d, faults };
}

const write = (path: string, value: number) => [{ orders: [{ type: 'write', path, value }], disposition: 0 }];
const storedValues = async (s: NgttServer, deviceId: string) => (await s.store.readData(deviceId, { limit: 100_000 })).flatMap((r) => r.values.map((v) => v[1]));
const confirmed = async (s: NgttServer, id: string) => (await s.store.getOrder(id))?.state === 'confirmed';

/** Orders confirmed and values stored exactly once: the runtime still works. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function stillWorks(t: { same: (...args: any[]) => boolean }, s: NgttServer, d: NgttDevice, deviceId: string, base: number) {
  const id = await s.enqueueOrder(deviceId, write('W9', base));
  for (let i = 0; i < 5; i++) await d.push({ path: 'P', value: base + i, timestamp: 1_700_000_000_000 + base + i });
  await until(async () => (await confirmed(s, id)) && d.status().values.pending === 0, 'an order confirmed and the values confirmed afterwards', 10_000);
  const values = (await storedValues(s, deviceId)).filter((v) => typeof v === 'number' && v >= base && v < base + 5);
  t.same(values.sort(), [0, 1, 2, 3, 4].map((i) => base + i), 'the values afterwards, each once');
}

t.test('throwing listeners: isolated from the machines and from each other; reported', async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  const { d, faults } = await device(s, 'dev-listeners');
  let othersCalled = 0;
  d.on('values-confirmed', () => {
    throw new Error('listener bug: values-confirmed');
  });
  d.on('values-confirmed', () => void othersCalled++);
  d.on('order', () => {
    throw new Error('listener bug: order');
  });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  await stillWorks(t, s, d, 'dev-listeners', 100);
  t.ok(othersCalled > 0, 'the other listener of the same event still ran');
  t.ok(faults.some((f) => f.source === 'listener' && /'values-confirmed' listener threw: listener bug/.test(f.message)));
  t.ok(faults.some((f) => f.source === 'listener' && /'order' listener threw/.test(f.message)));
  t.match(d.status().faults, { active: [], last: { source: 'listener' } });
  t.ok(d.status().faults.count >= 2);
});

t.test("an 'error' listener sees faults; without one nothing is thrown", async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  const { d } = await device(s, 'dev-error-event');
  const errors: Error[] = [];
  d.on('order', () => {
    throw new Error('boom');
  });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  await s.enqueueOrder('dev-error-event', write('W1', 1));
  await until(() => d.status().faults.count > 0, 'a fault without an error listener');
  d.on('error', (e) => void errors.push(e));
  await s.enqueueOrder('dev-error-event', write('W1', 2));
  await until(() => errors.length > 0, 'the error event');
  t.equal(errors[0].message, 'boom', 'the error the listener threw');
});

t.test('the supervisor itself fails: reported, restarted after a backoff, and the device works again', async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  const { d, faults } = await device(s, 'dev-supervisor');
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  await stillWorks(t, s, d, 'dev-supervisor', 100);
  // Inject a fault into the supervisor's own action: a report whose frames are not a list makes
  // `routeFrames` throw inside the machine, which stops that supervisor actor.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const first = (d as any).actor;
  first.send({ type: 'CONNECTION.FRAMES', epoch: 0, frames: null });
  await until(() => faults.some((f) => f.source === 'supervisor'), 'the supervisor fault');
  t.match(faults.find((f) => f.source === 'supervisor')!.message, /the supervisor failed and is restarted/);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  await until(() => (d as any).actor !== undefined && (d as any).actor !== first, 'a fresh supervisor');
  await until(() => d.status().connection === 'authenticated' && !d.status().faults.active.includes('supervisor'), 'connected again, the fault recovered');
  await stillWorks(t, s, d, 'dev-supervisor', 200);
  t.equal(d.status().faults.last?.source, 'supervisor');
});

t.test('the spool fails to settle once, then always for a while: retried with backoff, visible, nothing lost or doubled', async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  const { d, faults } = await device(s, 'dev-settle');
  const settle = SqliteSpool.prototype.settle;
  let failing = 1;
  SqliteSpool.prototype.settle = function (this: SqliteSpool, ...args: Parameters<typeof settle>) {
    if (failing-- > 0) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
    return settle.apply(this, args);
  };
  t.teardown(() => void (SqliteSpool.prototype.settle = settle));
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  await d.push({ path: 'P', value: 1, timestamp: 1_700_000_000_001 });
  await until(() => d.status().values.confirmed === 1, 'confirmed after the retry');
  t.ok(faults.some((f) => f.source === 'upload.settle' && /disk I\/O error/.test(f.message)), 'reported');
  t.same(d.status().faults.active, [], 'recovered');

  failing = Infinity;
  await d.push({ path: 'P', value: 2, timestamp: 1_700_000_000_002 });
  await until(() => d.status().faults.active.includes('upload.settle'), 'failing again, and shown as still failing');
  const id = await s.enqueueOrder('dev-settle', write('W1', 7));
  await until(() => confirmed(s, id), 'orders still run meanwhile');
  t.equal(d.status().values.pending, 1, 'the value waits in the spool');
  failing = 0;
  await until(() => d.status().values.pending === 0 && d.status().faults.active.length === 0, 'settled once the spool works');
  t.same((await storedValues(s, 'dev-settle')).sort(), [1, 2], 'each value stored once');
  await stillWorks(t, s, d, 'dev-settle', 200);
});

t.test('handlers that throw or never settle: orders rejected with the reason, no concurrent retry, reported', async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  let stuckCalls = 0;
  const { d, faults } = await device(s, 'dev-handlers', {
    executor: { attemptTimeoutMs: 50, abortGraceMs: 50, retryDelayMs: 5 },
    handlers: {
      onRead: () => 1,
      onWrite: (path) => {
        if (path === 'THROW') throw new TypeError('handler bug');
        if (path === 'STUCK') {
          stuckCalls++;
          return new Promise<void>(() => {});
        }
      },
    },
  });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  const thrown = await s.enqueueOrder('dev-handlers', write('THROW', 1));
  const stuck = await s.enqueueOrder('dev-handlers', [{ orders: [{ type: 'write', path: 'STUCK', value: 1, advise: 1 }], disposition: 0 }]);
  await until(async () => (await s.store.getOrder(thrown))?.state === 'rejected' && (await s.store.getOrder(stuck))?.state === 'rejected', 'both rejected', 10_000);
  t.match((await s.store.getOrder(thrown))?.reason, /write THROW: handler bug/);
  t.match((await s.store.getOrder(stuck))?.reason, /write STUCK: no answer within 50 ms; the handler did not stop, so it is not retried/);
  t.equal(stuckCalls, 1, 'FORCE, but never a second call while the first may still be writing');
  t.ok(faults.some((f) => f.source === 'handler' && /write THROW: handler threw TypeError: handler bug/.test(f.message)));
  t.ok(faults.some((f) => f.source === 'handler' && /write STUCK: handler did not return within 50 ms of being aborted/.test(f.message)));
  t.match(d.status().orders, { rejected: 2 });
  await stillWorks(t, s, d, 'dev-handlers', 300);
});

/** How many rows the spool faults reported ("N unreadable spool rows …"). */
const rowsReported = (faults: DeviceFault[]) => faults.reduce((n, f) => n + Number(/^(\d+) unreadable/.exec(f.message)?.[1] ?? 0), 0);

/** Damages spool rows through a second connection, as a failing disk or a careless hand would. */
function damage(file: string, sql: string[]) {
  const db = new Database(file);
  for (const statement of sql) db.prepare(statement).run();
  db.close();
}

t.test('corrupt spool rows before a restart: set aside, reported once, the rest delivered once', async (t) => {
  const s = await server();
  const ports = { ngttPort: s.ngttPort, httpsPort: s.httpsPort };
  await s.close(); // offline: everything stays in the spool
  const spoolPath = join(dir, 'corrupt-before.db');
  const a = (await device(ports, 'dev-corrupt-a', { spoolPath })).d;
  a.start();
  for (let i = 0; i < 20; i++) await a.push({ path: 'C', value: i, timestamp: 1_700_000_000_000 + i });
  await a.close({ timeoutMs: 100 });
  damage(spoolPath, [
    "UPDATE spool_values SET value = X'FFFF' WHERE seq = 3", // garbage
    'UPDATE spool_values SET value = substr(value, 1, 2) WHERE seq = 7', // truncated
    "UPDATE spool_values SET value = 'text' WHERE seq = 11", // wrong type
  ]);

  const s2 = await server(ports);
  t.teardown(() => s2.close());
  const { d, faults } = await device(ports, 'dev-corrupt-a', { spoolPath });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().values.pending === 0, 'the spool emptied');
  const stored = (await storedValues(s2, 'dev-corrupt-a')).sort((x, y) => Number(x) - Number(y));
  t.same(stored, [0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19], 'every sound value once (rows 3, 7, 11 held values 2, 6, 10)');
  const spoolFaults = faults.filter((f) => f.source === 'spool');
  t.equal(rowsReported(spoolFaults), 3, 'each damaged row reported once');
  t.match(spoolFaults[0].message, /unreadable spool rows? \(pending\) set aside: value is not MiniJSON/);
  t.same(d.status().faults.active, []);
  await stillWorks(t, s2, d, 'dev-corrupt-a', 400);
});

t.test('corrupt spool rows during a run, in batches on the wire and pending: set aside, the rest delivered once', async (t) => {
  const s = await server();
  const ports = { ngttPort: s.ngttPort, httpsPort: s.httpsPort };
  const spoolPath = join(dir, 'corrupt-during.db');
  const { d, faults } = await device(ports, 'dev-corrupt-b', { spoolPath, upload: { maxBatchAgeMs: 5, maxBatchValues: 4 } });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  await s.close(); // batches already sent stay unconfirmed; new values stay pending
  await until(() => d.status().connection !== 'authenticated', 'the device notices');
  for (let i = 0; i < 12; i++) await d.push({ path: 'D', value: i, timestamp: 1_700_000_000_000 + i });
  damage(spoolPath, ["UPDATE spool_values SET value = X'07FF' WHERE seq = (SELECT min(seq) FROM spool_values)", "UPDATE spool_values SET path = X'00' WHERE seq = (SELECT max(seq) FROM spool_values)"]);
  const s2 = await server(ports);
  t.teardown(() => s2.close());
  await until(() => d.status().values.pending === 0, 'the spool emptied', 10_000);
  t.same((await storedValues(s2, 'dev-corrupt-b')).sort((x, y) => Number(x) - Number(y)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the first and last values were damaged; every other once');
  t.equal(rowsReported(faults.filter((f) => f.source === 'spool')), 2, 'each damaged row reported once');
  await stillWorks(t, s2, d, 'dev-corrupt-b', 500);
});

t.test('a wait order does not keep the device running after close(), and close() releases a push waiting for room', async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  const { d } = await device(s, 'dev-close', { spoolMaxValues: 2 });
  let executing!: () => void;
  const started = new Promise<void>((r) => (executing = r));
  d.on('order', (e) => e.phase === 'executing' && executing());
  d.start();
  await until(() => d.status().connection === 'authenticated', 'connected');
  await s.close(); // values stay in the spool: it fills up
  await until(() => d.status().connection !== 'authenticated', 'offline');
  const s2 = await server({ ngttPort: s.ngttPort, httpsPort: s.httpsPort });
  t.teardown(() => s2.close());
  await until(() => d.status().connection === 'authenticated', 'back');
  await s2.enqueueOrder('dev-close', [{ orders: [{ type: 'wait', time: 3600 }], disposition: 0 }]);
  await within(started, 'the wait order to run');
  await s2.close();
  await d.push([{ path: 'F', values: [[1, 1], [2, 2]] }]);
  const blocked = d.push({ path: 'F', value: 3, timestamp: 3 }).then(
    () => 'stored',
    (e: Error) => e.message,
  );
  await within(d.close({ timeoutMs: 200 }), 'close() despite the hour-long wait');
  t.equal(await within(blocked, 'the waiting push to be released'), 'spool is closed');
  await t.rejects(d.getConfiguration(), /device is closed/, 'after close, calls reject (they do not throw)');
  await t.rejects(d.push({ path: 'F', value: 4 }), /device is closed/);
});

t.test('a device process with an hour-long wait order running ends by itself after close()', async (t) => {
  const s = await server();
  t.teardown(() => s.close());
  const cert = await pki.device('dev-wait-child');
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'wait-order-child.ts')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, NGTT_TEST_DEVICE: JSON.stringify({ ca: pki.ca.cert, ...cert, ngttPort: s.ngttPort, httpsPort: s.httpsPort, spoolPath: join(dir, 'wait-child.db') }) },
  });
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout! });
  const seen: string[] = [];
  lines.on('line', (l) => seen.push(l));
  await until(() => s.connectedDevices().length === 1, 'the child device connected', 20_000);
  await s.enqueueOrder('dev-wait-child', [{ orders: [{ type: 'wait', time: 3600 }], disposition: 0 }]);
  await until(() => seen.includes('executing'), 'the wait order to run');
  child.stdin!.write('close\n');
  const [code] = await exited; // the test's own timeout would catch a process held open
  t.equal(code, 0, 'exited on its own');
  t.ok(seen.includes('closed'));
});

// Room for the WAL to grow to its checkpoint size (1000 pages) once the filler is gone.
const disk = smallDisk(t, dir, 16 * 1024);

t.test('the spool on a full disk: push rejects clearly, nothing stored is lost, it recovers when space returns', { skip: disk.skip }, async (t) => {
  const mount = disk.mount!;
  const s = await server();
  const ports = { ngttPort: s.ngttPort, httpsPort: s.httpsPort };
  const { d, faults } = await device(ports, 'dev-full', { spoolPath: join(mount, 'spool.db') });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await until(() => d.status().connection === 'authenticated', 'connected');
  await s.close(); // what is pushed now waits in the spool
  await until(() => d.status().connection !== 'authenticated', 'offline');
  for (let i = 0; i < 20; i++) await d.push({ path: 'S', value: i, timestamp: 1_700_000_000_000 + i });

  fill(mount);
  const big = [{ path: 'B', values: Array.from({ length: 3000 }, (_, i) => [1_700_000_001_000 + i, `value ${i} `.repeat(10)] as [number, string]) }];
  const error = await d.push(big).then(() => undefined, (e: Error & { code?: string }) => e);
  t.match(error, { name: 'SpoolStorageError', code: /^SQLITE_(FULL|IOERR)/, message: /^spool write failed: / }, 'a clear error');
  t.ok(d.status().faults.active.includes('spool'), 'shown in status()');
  t.ok(faults.some((f) => f.source === 'spool' && /spool write failed/.test(f.message)), 'and as an event');
  t.equal(d.status().values.pending, 20, 'what was stored is still there');

  const s2 = await server(ports);
  t.teardown(() => s2.close());
  const id = await s2.enqueueOrder('dev-full', write('W1', 1));
  await until(() => confirmed(s2, id), 'orders run and are confirmed with the disk full');

  unfill(mount);
  await d.push(big);
  await until(() => d.status().values.pending === 0, 'all confirmed once there is room', 20_000);
  const values = await storedValues(s2, 'dev-full');
  t.equal(values.length, 3020, 'nothing lost');
  t.equal(new Set(values.map(String)).size, 3020, 'nothing doubled');
  await until(() => d.status().faults.active.length === 0, 'no fault active any more');
  await stillWorks(t, s2, d, 'dev-full', 600);
});
