/**
 * BAOBs on the device (spec §11) against the reference server, over real mutual TLS on
 * 127.0.0.1: downloads, uploads, conflicts (the higher version wins), deletion, a restart of the
 * device, over NGTT and HTTPS-only; failing syncs as faults; message-order receipts (kept
 * across a restart until the server took them).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { NgttDevice, type NgttDeviceOptions } from '../../src/device/ngtt-device.js';
import type { DeviceBaobEvent } from '../../src/device/index.js';
import { startServer, type NgttServer, type ServerOptions } from '../../src/server/index.js';
import { makePki } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-baobs-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
let seq = 0;

async function server(t: { teardown(fn: () => unknown): void }, options: Partial<ServerOptions> = {}): Promise<NgttServer> {
  const s = await startServer({
    tls: { ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key },
    ngttPort: 0,
    httpsPort: 0,
    adminPort: null,
    dataDir: join(dir, `srv-${++seq}`),
    logger: pino({ enabled: false }),
    ...options,
  });
  t.teardown(() => s.close());
  return s;
}

async function device(s: NgttServer, options: Partial<NgttDeviceOptions> & { deviceId: string }): Promise<NgttDevice> {
  const { deviceId, ...rest } = options;
  return new NgttDevice({
    host: '127.0.0.1',
    ca: pki.ca.cert,
    ...(await pki.device(deviceId)),
    ngttPort: s.ngttPort,
    httpsPort: s.httpsPort,
    spoolPath: join(dir, `spool-${++seq}.db`),
    handlers: { onRead: () => 1, onWrite: () => {} },
    pollIntervalMs: 50,
    timings: { backoff: { baseMs: 50, maxMs: 200 } },
    retry: { baseMs: 50, maxMs: 200 },
    ...rest,
  });
}

/** The next 'baob' event that matches. */
function nextBaob(d: NgttDevice, what: Partial<DeviceBaobEvent>): Promise<DeviceBaobEvent> {
  return within(
    new Promise((resolve) => {
      const listener = (e: DeviceBaobEvent) => {
        if (Object.entries(what).every(([k, v]) => e[k as keyof DeviceBaobEvent] === v)) {
          d.off('baob', listener);
          resolve(e);
        }
      };
      d.on('baob', listener);
    }),
    `a 'baob' event ${JSON.stringify(what)}`,
  );
}

const text = (d: NgttDevice, key: string) => d.baobs.get(key)?.bytes.toString();
const onServer = async (s: NgttServer, deviceId: string, key: string) => {
  const b = await s.store.getBaob(deviceId, key);
  return b && { version: b.version, text: Buffer.from(b.data).toString() };
};

for (const ngtt of [true, false]) {
  const via = ngtt ? 'NGTT' : 'HTTPS-only';

  t.test(`${via}: both directions, conflicts, deletion, restart`, async (t) => {
    const s = await server(t);
    const id = `dev-baob-${ngtt ? 'ngtt' : 'https'}`;
    await s.store.publishBaob(id, 'config.json', Buffer.from('{"setpoint":20}'));
    const d = await device(s, { deviceId: id, ngtt });
    const events: DeviceBaobEvent[] = [];
    d.on('baob', (e) => events.push(e));
    const first = nextBaob(d, { key: 'config.json', change: 'downloaded' });
    d.start();
    t.teardown(() => d.close({ timeoutMs: 1000 }));
    t.same(await first, { key: 'config.json', version: 1, change: 'downloaded' }, 'synced after connecting: the server’s BAOB is downloaded');
    t.equal(text(d, 'config.json'), '{"setpoint":20}');
    if (ngtt) t.equal(d.status().transport, 'ngtt', 'the plan came over NGTT');

    // The server publishes a new version: an on-demand sync downloads it.
    await s.store.publishBaob(id, 'config.json', Buffer.from('{"setpoint":21}'));
    t.same(await d.baobs.sync({ timeoutMs: 5000 }), { downloaded: ['config.json'], uploaded: [], deleted: [] });
    t.same(d.baobs.get('config.json')?.version, 2);
    t.equal(text(d, 'config.json'), '{"setpoint":21}');

    // The device changes it: uploaded (put() asks for a sync by itself).
    const uploaded = nextBaob(d, { key: 'config.json', change: 'uploaded' });
    t.equal(d.baobs.put('config.json', '{"setpoint":22}'), 3, 'put bumps the version by one');
    t.same(d.baobs.list(), [{ key: 'config.json', version: 3, size: 15, synced: false }], 'not on the server yet');
    t.same(await uploaded, { key: 'config.json', version: 3, change: 'uploaded' });
    t.same(await onServer(s, id, 'config.json'), { version: 3, text: '{"setpoint":22}' }, 'the server has the device’s version');
    t.same(d.baobs.list(), [{ key: 'config.json', version: 3, size: 15, synced: true }]);

    // Conflict, the device ahead: server v4, device v5 → the device's value wins.
    await s.store.publishBaob(id, 'config.json', Buffer.from('server v4'));
    const deviceWins = nextBaob(d, { key: 'config.json', change: 'uploaded' });
    d.baobs.put('config.json', 'device v4');
    d.baobs.put('config.json', 'device v5');
    t.same(await deviceWins, { key: 'config.json', version: 5, change: 'uploaded' });
    t.same(await onServer(s, id, 'config.json'), { version: 5, text: 'device v5' }, 'higher version wins: the device’s');

    // Conflict, the server ahead: server v7, device v6 → the server's value wins on the device.
    await s.store.publishBaob(id, 'config.json', Buffer.from('server v6'));
    await s.store.publishBaob(id, 'config.json', Buffer.from('server v7'));
    const serverWins = nextBaob(d, { key: 'config.json', change: 'downloaded' });
    d.baobs.put('config.json', 'device v6');
    t.same(await serverWins, { key: 'config.json', version: 7, change: 'downloaded' });
    t.equal(text(d, 'config.json'), 'server v7', 'higher version wins: the server’s');
    t.same(await onServer(s, id, 'config.json'), { version: 7, text: 'server v7' }, 'the lower version was not uploaded');

    // Deleted on the server → deleted on the device; a key only the device has is deleted too (spec §11).
    await s.store.publishBaob(id, 'script.py', Buffer.from('print(1)'));
    await d.baobs.sync({ timeoutMs: 5000 });
    t.equal(text(d, 'script.py'), 'print(1)');
    await s.store.deleteBaob(id, 'script.py');
    d.baobs.put('local-only', 'x');
    const result = await d.baobs.sync({ timeoutMs: 5000 });
    t.same(result.deleted.sort(), ['local-only', 'script.py']);
    t.equal(d.baobs.get('script.py'), undefined);
    t.same(d.baobs.list().map((b) => b.key), ['config.json']);
    const deletions = events.filter((e) => e.change === 'deleted').sort((a, b) => a.key.localeCompare(b.key));
    t.same(deletions, [{ key: 'local-only', version: 0, change: 'deleted' }, { key: 'script.py', version: 1, change: 'deleted' }], 'deletions are events');

    // Restart: the store survives, and a sync with nothing new changes nothing.
    const spoolPath = (d as unknown as { options: NgttDeviceOptions }).options.spoolPath;
    await d.close({ timeoutMs: 1000 });
    const again = await device(s, { deviceId: id, ngtt, spoolPath });
    const after: DeviceBaobEvent[] = [];
    again.on('baob', (e) => after.push(e));
    again.start();
    t.teardown(() => again.close({ timeoutMs: 1000 }));
    t.same(again.baobs.get('config.json'), { bytes: Buffer.from('server v7'), version: 7 }, 'kept across the restart');
    t.same(await again.baobs.sync({ timeoutMs: 5000 }), { downloaded: [], uploaded: [], deleted: [] });
    t.same(after, [], 'nothing changed');
  });
}

t.test('a sync that fails is a fault, retried with backoff until it works', async (t) => {
  const s = await server(t, { maxBaobBytes: 16 });
  const id = 'dev-baob-fault';
  await s.store.publishBaob(id, 'fw', Buffer.from('v1'));
  const d = await device(s, { deviceId: id, ngtt: true });
  const downloaded = nextBaob(d, { key: 'fw', change: 'downloaded' });
  d.start();
  t.teardown(() => d.close({ timeoutMs: 1000 }));
  await downloaded;

  const fault = within(new Promise<{ source: string; message: string }>((resolve) => d.on('fault', (f) => f.source === 'baob' && resolve(f))), 'a baob fault');
  d.baobs.put('fw', Buffer.alloc(64, 1)); // larger than the server takes: 413
  t.match(await fault, { source: 'baob', message: /PUT fw \(version 2\).*larger than 16 bytes/ });
  t.ok(d.status().faults.active.includes('baob'), 'shown in status() while it fails');
  t.equal(d.status().connection, 'authenticated', 'nothing else stops');

  const uploaded = nextBaob(d, { key: 'fw', change: 'uploaded' });
  d.baobs.put('fw', 'small');
  t.same(await uploaded, { key: 'fw', version: 3, change: 'uploaded' }, 'the retry succeeds once the value fits');
  await until(() => !d.status().faults.active.includes('baob'), 'the fault to clear');
});

t.test('BAOB calls: clear errors before start, for bad keys, and after close', async (t) => {
  const s = await server(t);
  const d = await device(s, { deviceId: 'dev-baob-api', ngtt: false });
  t.throws(() => d.baobs.get('x'), /not started/);
  await t.rejects(d.baobs.sync(), /not started/);
  d.start();
  t.throws(() => d.baobs.put('a/b', 'x'), TypeError, 'a key with "/" cannot travel in the URL');
  t.throws(() => d.baobs.put('', 'x'), TypeError);
  t.throws(() => d.baobs.put('k', 42 as unknown as string), TypeError);
  t.same(d.baobs.list(), [], 'nothing stored by the refused calls');
  await d.close({ timeoutMs: 1000 });
  t.throws(() => d.baobs.get('x'), /closed/);
});

for (const ngtt of [true, false]) {
  t.test(`a message order produces a receipt on the server (${ngtt ? 'NGTT' : 'HTTPS-only'})`, async (t) => {
    const s = await server(t);
    const id = `dev-msg-${ngtt ? 'ngtt' : 'https'}`;
    const handled: string[] = [];
    const d = await device(s, { deviceId: id, ngtt, handlers: { onRead: () => 1, onWrite: () => {}, onMessage: (uuid) => void handled.push(uuid) } });
    d.start();
    t.teardown(() => d.close({ timeoutMs: 1000 }));
    const done = within(new Promise((resolve) => d.on('order', (e) => e.phase === 'done' && resolve(e))), 'the order to be done');
    const orderId = await s.enqueueOrder(id, [{ orders: [{ type: 'message', uuid: 'msg-42' }], disposition: 0 }]);
    t.match(await done, { outcome: 'acked', executed: true });
    t.same(handled, ['msg-42'], 'the handler ran');
    await until(async () => (await s.store.getOrder(orderId))?.messages?.[0]?.receivedAt != null, 'the receipt on the server');
    t.match((await s.store.getOrder(orderId))?.messages, [{ uuid: 'msg-42', receivedAt: Number }]);
  });
}

t.test('a receipt the server could not take before the device closed is sent after the next start', async (t) => {
  const s = await server(t);
  const id = 'dev-msg-restart';
  const closedPort = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const handlers = { onRead: () => 1, onWrite: () => {}, onMessage: () => {} };
  // NGTT reaches the server, HTTPS does not: the order is acknowledged, its receipt cannot go out.
  const d = await device(s, { deviceId: id, ngtt: true, httpsPort: closedPort, handlers });
  d.start();
  const done = within(new Promise((resolve) => d.on('order', (e) => e.phase === 'done' && resolve(e))), 'the order to be done');
  const orderId = await s.enqueueOrder(id, [{ orders: [{ type: 'message', uuid: 'msg-late' }], disposition: 0 }]);
  t.match(await done, { via: 'ngtt', outcome: 'acked' });
  await until(() => d.status().faults.active.includes('https'), 'the receipt to fail over HTTPS');
  const spoolPath = (d as unknown as { options: NgttDeviceOptions }).options.spoolPath;
  await d.close({ timeoutMs: 1000 });
  t.match((await s.store.getOrder(orderId))?.messages, [{ uuid: 'msg-late', receivedAt: null }], 'not received yet');

  const again = await device(s, { deviceId: id, ngtt: true, spoolPath, handlers });
  again.start();
  t.teardown(() => again.close({ timeoutMs: 1000 }));
  await until(async () => (await s.store.getOrder(orderId))?.messages?.[0]?.receivedAt != null, 'the receipt after the restart');
});
