/**
 * Per-device state the server holds in memory stays bounded: an operator's lookup of a device
 * creates nothing, and the counters of devices that left are forgotten after the retention.
 */
import t from 'tap';
import { FrameType } from '../../src/protocol/index.js';
import { DeviceRegistry, type LiveSession } from '../../src/server/device-registry.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();

t.test('admin lookups of unknown devices create no state', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const admin = (path: string) => fetch(`http://127.0.0.1:${server.adminPort}${path}`);
  for (let i = 0; i < 200; i++) {
    const reply = await admin(`/v1/admin/devices/ghost-${i}`);
    t.equal(reply.status, 200);
    if (i === 0) t.match(await reply.json(), { deviceId: 'ghost-0', connected: false, counters: { connections: 0, lastSeen: null } });
    else await reply.arrayBuffer();
  }
  t.same(await (await admin('/v1/admin/devices')).json(), { devices: [] }, 'no ghost listed');
});

t.test('counters of a disconnected device are evicted after the retention; a connected one stays', async (t) => {
  const server = await startTestServer(pki, { counterRetentionMs: 300 });
  t.teardown(() => server.close());
  const listed = async () => ((await (await fetch(`http://127.0.0.1:${server.adminPort}/v1/admin/devices`)).json()) as { devices: { deviceId: string }[] }).devices.map((d) => d.deviceId);

  const staying = await server.connect('dev-staying');
  t.teardown(() => staying.destroy());
  const leaving = await server.connect('dev-leaving');
  leaving.send(1, FrameType.DATA_STREAM, [{ path: 'P', values: [[Date.now(), 1]] }]);
  await leaving.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
  t.same(await listed(), ['dev-leaving', 'dev-staying']);
  await leaving.destroy();
  await until(async () => (await listed()).join() === 'dev-staying', 'the disconnected device to be forgotten', 10_000);
  t.equal(server.counters('dev-leaving').dataBatchesConfirmed, 0, 'its counters are gone');
  t.equal(server.connectedDevices()[0].deviceId, 'dev-staying', 'the silent but connected device is kept');
  await staying.ping();
});

t.test('registry: totals keep what evicted devices counted; eviction spares connected devices', async (t) => {
  const registry = new DeviceRegistry();
  const session: LiveSession = { deviceId: 'on', connectedAt: 0, remoteAddress: 'x', close: async () => {} };
  await registry.handOver('on', async () => session);
  for (const id of ['on', 'off-1', 'off-2']) {
    const c = registry.counters(id);
    c.ordersConfirmed = 2;
    c.lastSeen = 1000;
  }
  registry.counters('off-2').lastSeen = 5000;
  t.equal(registry.evictIdle(2000), 1, 'only off-1: not connected and last seen before the cutoff');
  t.same([...registry.allCounters().keys()].sort(), ['off-2', 'on']);
  t.equal(registry.totals().ordersConfirmed, 6, 'the total still includes off-1');
  t.equal(registry.peekCounters('nobody'), undefined);
  t.equal(registry.allCounters().size, 2, 'peeking created nothing');
});
