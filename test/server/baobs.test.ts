/**
 * BAOB sync on the server (spec §11), driven by a protocol-level device (test/helpers/
 * baob-device.ts) over HTTPS as the original client does it and over NGTT: both directions,
 * conflicts (the higher version wins), deletion, and a restart of the server on its SQLite store.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FrameType } from '../../src/protocol/index.js';
import { BaobDevice } from '../helpers/baob-device.js';
import { SmokHttpClient } from '../helpers/smok-http.js';
import { makePki, startTestServer, type TestServer } from '../helpers/server-fixture.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-baobs-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

async function deviceFor(t: { teardown(fn: () => unknown): void }, server: TestServer, deviceId: string) {
  const http = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, ...(await pki.device(deviceId)) });
  t.teardown(() => http.close());
  return new BaobDevice(http);
}

const admin = (server: TestServer, path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${server.adminPort}/v1/admin/devices${path}`, init);
const publish = async (server: TestServer, deviceId: string, key: string, value: string) =>
  (await (await admin(server, `/${deviceId}/baobs/${encodeURIComponent(key)}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: value })).json()) as { version: number };

for (const via of ['HTTPS', 'NGTT'] as const) {
  t.test(`${via}: both directions, the higher version wins, deletion`, async (t) => {
    const server = await startTestServer(pki);
    t.teardown(() => server.close());
    const dev = `dev-${via}`;
    const device = await deviceFor(t, server, dev);
    const raw = via === 'NGTT' ? await server.connect(dev) : null;
    t.teardown(() => raw?.destroy());
    let tid = 1;
    const sync = () => (raw ? device.syncNgtt(raw, tid++) : device.syncHttps());

    // Server → device.
    t.match(await publish(server, dev, 'config.json', '{"setpoint": 21}'), { key: 'config.json', version: 1, size: 16, updatedAt: Number });
    await publish(server, dev, 'script.py', 'print(1)');
    t.match(await sync(), { downloaded: ['config.json', 'script.py'], uploaded: [], deleted: [] });
    t.same(device.versions(), { 'config.json': 1, 'script.py': 1 });
    t.equal(device.text('config.json'), '{"setpoint": 21}');
    t.match(await sync(), { downloaded: [], uploaded: [], deleted: [] }, 'in sync: nothing to do');

    // Device → server: a local change has the higher version.
    device.set('config.json', '{"setpoint": 23}');
    t.match(await sync(), { uploaded: ['config.json'], downloaded: [] });
    const stored = await server.store.getBaob(dev, 'config.json');
    t.equal(stored?.version, 2);
    t.equal(Buffer.from(stored!.data).toString(), '{"setpoint": 23}');

    // Conflict: both changed since; the operator's newer version (4) beats the device's (3).
    await publish(server, dev, 'config.json', 'operator v3');
    await publish(server, dev, 'config.json', 'operator v4');
    device.set('config.json', 'device v3');
    t.match(await sync(), { downloaded: ['config.json'], uploaded: [] });
    t.equal(device.text('config.json'), 'operator v4', 'the higher version won');
    // …and the other way round: the device moved further ahead.
    device.set('script.py', 'print(2)');
    device.set('script.py', 'print(3)');
    t.match(await sync(), { uploaded: ['script.py'] });
    t.equal(Buffer.from((await server.store.getBaob(dev, 'script.py'))!.data).toString(), 'print(3)');

    // Deletion: the operator removes one; a device-made key the server never had goes too.
    t.equal((await admin(server, `/${dev}/baobs/script.py`, { method: 'DELETE' })).status, 200);
    device.set('local-only', 'x');
    t.match(await sync(), { deleted: ['script.py', 'local-only'] });
    t.same(device.versions(), { 'config.json': 4 });

    // Republished after deletion: the version continues, so the device takes it.
    t.match(await publish(server, dev, 'script.py', 'print("back")'), { version: 4 });
    t.match(await sync(), { downloaded: ['script.py'] });
    t.same(device.versions(), { 'config.json': 4, 'script.py': 4 });
  });
}

t.test('NGTT: SYNC_BAOB_REQUEST answers on its tid; a malformed one closes the connection', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  await server.store.publishBaob('dev-n', 'a', Buffer.from('1'));
  const raw = await server.connect('dev-n');
  raw.send(0x1234, FrameType.SYNC_BAOB_REQUEST);
  const empty = await raw.takeType(FrameType.SYNC_BAOB_RESPONSE, 0x1234);
  t.ok(empty, 'an empty payload means "I hold nothing"');
  raw.send(7, FrameType.SYNC_BAOB_REQUEST, { a: 'one' });
  await raw.closed;
  t.equal(server.counters('dev-n').protocolErrors, 1);
  t.ok(server.logs.some((l) => /version must be a non-negative integer/.test(JSON.stringify(l))), 'the log says why');
});

t.test('SQLite: BAOBs and versions survive a server restart', async (t) => {
  const dataDir = join(dir, 'restart');
  let server = await startTestServer(pki, { dataDir });
  let device = await deviceFor(t, server, 'dev-r');
  await publish(server, 'dev-r', 'fw.bin', 'firmware 1');
  await device.syncHttps();
  device.set('fw.bin', 'patched on the device');
  t.match(await device.syncHttps(), { uploaded: ['fw.bin'] });
  await publish(server, 'dev-r', 'doomed', 'x');
  await admin(server, '/dev-r/baobs/doomed', { method: 'DELETE' });
  await server.close();

  server = await startTestServer(pki, { dataDir });
  t.teardown(() => server.close());
  device = await deviceFor(t, server, 'dev-r');
  const listed = (await (await admin(server, '/dev-r/baobs')).json()) as { baobs: { key: string; version: number }[] };
  t.same(listed.baobs.map((b) => [b.key, b.version]), [['fw.bin', 2]], 'the upload is there after the restart');
  const fresh = await deviceFor(t, server, 'dev-r');
  t.match(await fresh.syncHttps(), { downloaded: ['fw.bin'] });
  t.equal(fresh.text('fw.bin'), 'patched on the device');
  t.match(await publish(server, 'dev-r', 'doomed', 'y'), { version: 2 }, 'a deleted key keeps counting after the restart');
});

t.test('admin API: BAOB routes and their errors', async (t) => {
  const server = await startTestServer(pki, { maxBaobBytes: 64 });
  t.teardown(() => server.close());
  t.equal((await admin(server, '/dev-a/baobs/x', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(65) })).status, 413);
  const tooBig = await admin(server, '/dev-a/baobs/x', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(65) });
  t.match(await tooBig.json(), { status: /larger than 64 bytes/ });
  const noType = await admin(server, '/dev-a/baobs/x', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(noType.status, 400);
  t.match(await noType.json(), { status: /octet-stream/ });
  t.equal((await admin(server, '/dev-a/baobs/missing')).status, 404);
  t.equal((await admin(server, '/dev-a/baobs/missing', { method: 'DELETE' })).status, 404);
  await publish(server, 'dev-a', 'x', 'hello');
  const got = await admin(server, '/dev-a/baobs/x');
  t.equal(got.headers.get('x-smok-baob-version'), '1');
  t.equal(await got.text(), 'hello');
  t.match(await (await admin(server, '/dev-a/baobs')).json(), { baobs: [{ key: 'x', version: 1, size: 5 }] });
});
