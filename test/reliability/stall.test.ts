/**
 * A link that stalls: both TCP connections stay open, nothing moves, no error anywhere. Only the
 * device's keepalive (spec §5.5, short timings here) can notice; it must drop the link, reconnect
 * and deliver what waited, and the server must requeue what the stalled connection held.
 * Also: the same traffic through a link that delays and fragments every chunk (TLS records
 * and frames split across many TCP segments) loses and doubles nothing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { NgttDevice } from '../../src/device/ngtt-device.js';
import type { NgttServer } from '../../src/server/index.js';
import { check, orderSections, summary } from '../helpers/reliability.js';
import { startRig } from '../helpers/rig.js';
import { makePki } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-stall-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

async function setup(t: { teardown(fn: () => unknown): void }, deviceId: string, timings = {}) {
  const rig = await startRig(t, pki, { deviceId, dir, timings });
  const states: string[] = [];
  const reasons: string[] = [];
  rig.device.on('state', (s, detail) => (states.push(s), detail.reason && reasons.push(detail.reason)));
  await until(() => rig.device.status().connection === 'authenticated', 'connected');
  return { ...rig, states, reasons };
}

async function workload(server: NgttServer, device: NgttDevice, deviceId: string, orders: Map<number, string>, accepted: string[], from: number, count: number) {
  for (let n = from; n < from + count; n++) {
    orders.set(n, await server.enqueueOrder(deviceId, orderSections(n)));
    await device.push({ path: 'V', value: n, timestamp: 1_700_000_000_000 + n });
    accepted.push(`V=${n}`);
  }
}

t.test('a stalled link is detected by the keepalive alone; what waited is delivered once', async (t) => {
  const deviceId = 'dev-stall';
  const { server, proxy, device, executions, states, reasons } = await setup(t, deviceId, { pingIdleMs: 100, pingDeadMs: 300, receiveDeadMs: 400 });
  const orders = new Map<number, string>();
  const accepted: string[] = [];
  await workload(server, device, deviceId, orders, accepted, 0, 10);
  await until(async () => (await server.store.listOrders(deviceId, { state: 'confirmed' })).length === 10, 'the first orders confirmed');

  proxy.stallAll();
  const stalledAt = Date.now();
  await workload(server, device, deviceId, orders, accepted, 10, 10); // waits on the server and in the spool
  await until(() => device.status().connection !== 'authenticated', 'the device to declare the stalled link dead', 5000);
  const detectedMs = Date.now() - stalledAt;
  t.equal(proxy.stats.cuts, 0, 'nothing was cut: the sockets were open and silent');
  t.equal(server.connectedDevices().length, 1, 'the server still holds the stalled connection (its idle timeout is 150 s)');

  await until(async () => (await server.store.listOrders(deviceId, { state: 'confirmed', limit: 100 })).length === 20 && device.status().values.pending === 0, 'everything delivered after the reconnect', 10_000);
  const outcome = await check({ store: server.store, deviceId, orders, executions, accepted, spoolPending: device.status().values.pending });
  t.comment(summary('stalled link', outcome, { 'ms to detect': detectedMs }));
  t.match(reasons[0], /^(PING not answered|nothing received)$/, `detected by the keepalive (${reasons[0]}), not by a socket error`);
  t.ok(states.filter((s) => s === 'authenticated').length >= 2, 'reconnected');
  t.same([...outcome.lost, ...outcome.duplicated, ...outcome.limbo], [], 'nothing lost, doubled or in limbo');
});

t.test('a slow link that delays and fragments every chunk loses and doubles nothing', async (t) => {
  const deviceId = 'dev-frag';
  const { server, proxy, device, executions } = await setup(t, deviceId);
  proxy.policy.delayMs = 2;
  proxy.policy.fragmentBytes = 7;
  proxy.cutAll(); // new connections get the slow policy (the handshake too)
  await until(() => proxy.connections.size === 1 && device.status().connection === 'authenticated', 'reconnected through the slow link');
  const orders = new Map<number, string>();
  const accepted: string[] = [];
  await workload(server, device, deviceId, orders, accepted, 0, 20);
  await until(async () => (await server.store.listOrders(deviceId, { state: 'confirmed', limit: 100 })).length === 20 && device.status().values.pending === 0, 'everything delivered', 15_000);
  const outcome = await check({ store: server.store, deviceId, orders, executions, accepted, spoolPending: device.status().values.pending });
  t.comment(summary('delayed and fragmented link', outcome));
  t.same([...outcome.lost, ...outcome.duplicated, ...outcome.limbo], [], 'nothing lost, doubled or in limbo');
  t.equal(server.counters(deviceId).protocolErrors, 0);
});
