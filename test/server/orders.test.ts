import t from 'tap';
import { FrameType } from '../../src/protocol/index.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();

t.test('orders: pushed after FETCH_ORDERS, confirmed, rejected, and exactly the unsettled ones redelivered', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await server.enqueueOrder('dev-1', readSection(`W${i}`)));

  const device = await server.connect('dev-1');
  await device.ping();
  t.equal(device.pending(FrameType.ORDER).length, 0, 'no ORDER before FETCH_ORDERS');

  device.send(0, FrameType.FETCH_ORDERS);
  const first = await device.takeOrders(4);
  t.same(first.map((o) => o.id), ids.slice(0, 4), 'in queue order, window of 4');
  t.same(first[0].sections, [{ orders: [{ type: 'read', path: 'W0' }], disposition: 0, id: ids[0] }], 'sections carry the stored id');
  t.equal(new Set(first.map((o) => o.tid)).size, 4, 'tids unique among unacknowledged orders');
  await device.ping();
  t.equal(device.pending(FrameType.ORDER).length, 0, 'nothing beyond the window');

  device.send(first[0].tid, FrameType.ORDER_CONFIRM);
  device.send(first[1].tid, FrameType.ORDER_REJECT, { reason: 'no such pathpoint' });
  const next = await device.takeOrders(2);
  t.same(next.map((o) => o.id), ids.slice(4, 6), 'each settlement frees a slot');
  t.notOk(next.some((o) => o.tid === first[2].tid || o.tid === first[3].tid), 'new tids do not collide with unacknowledged ones');

  await until(async () => (await server.store.getOrder(ids[1]))?.state === 'rejected', 'the rejection to be stored');
  t.equal((await server.store.getOrder(ids[0]))?.state, 'confirmed');
  t.equal((await server.store.getOrder(ids[1]))?.reason, 'no such pathpoint');

  // Drop the connection with 2..5 unsettled; they come back, and only they.
  await device.destroy();
  await until(() => server.connectedDevices().length === 0, 'the server to see the disconnect');
  const later = await server.enqueueOrder('dev-1', readSection('late'));
  const again = await server.connect('dev-1');
  t.teardown(() => again.destroy());
  again.send(0, FrameType.FETCH_ORDERS);
  const redelivered = await again.takeOrders(4);
  t.same(redelivered.map((o) => o.id), ids.slice(2, 6), 'unsettled orders first, same ids');
  for (const o of redelivered) again.send(o.tid, FrameType.ORDER_CONFIRM);
  const last = await again.takeOrder();
  t.equal(last.id, later);
  again.send(last.tid, FrameType.ORDER_CONFIRM);
  await again.ping();
  await until(async () => (await server.store.listOrders('dev-1', { state: 'confirmed' })).length === 6, 'all confirmations stored');
  t.same((await server.store.listOrders('dev-1', { state: 'rejected' })).map((o) => o.id), [ids[1]]);
  t.same(
    again.received.filter((f) => f.type === FrameType.ORDER).length,
    5,
    'confirmed and rejected orders never came again',
  );
  const c = server.counters('dev-1');
  t.equal(c.ordersConfirmed, 6);
  t.equal(c.ordersRejected, 1);
});

t.test('orders: the window holds under load and new orders are pushed as they arrive', async (t) => {
  const server = await startTestServer(pki, { window: 3 });
  t.teardown(() => server.close());
  const device = await server.connect('dev-w');
  t.teardown(() => device.destroy());
  device.send(0, FrameType.FETCH_ORDERS);
  await device.ping();

  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push(await server.enqueueOrder('dev-w', readSection(`P${i}`)));
  const seen: string[] = [];
  let maxUnacked = 0;
  const unacked = new Map<number, string>();
  while (seen.length < 20) {
    const order = await device.takeOrder();
    t.notOk(unacked.has(order.tid), 'tid not in use');
    unacked.set(order.tid, order.id);
    seen.push(order.id);
    await device.ping(); // lets any frame the server wrongly pushed beyond the window arrive
    maxUnacked = Math.max(maxUnacked, unacked.size + device.pending(FrameType.ORDER).length);
    if (unacked.size === 3 || seen.length === 20) {
      // Acknowledge the oldest one to let the next in.
      const [tid] = unacked.keys();
      unacked.delete(tid);
      device.send(tid, FrameType.ORDER_CONFIRM);
    }
  }
  t.equal(maxUnacked, 3, 'never more than the window unacknowledged');
  t.same(seen, ids, 'all orders, in order');
});

t.test('admin enqueue reaches a connected device at once', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const device = await server.connect('dev-live');
  t.teardown(() => device.destroy());
  device.send(0, FrameType.FETCH_ORDERS);
  await device.ping();
  const response = await fetch(`http://127.0.0.1:${server.adminPort}/v1/admin/devices/dev-live/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([{ orders: [{ type: 'write', path: 'W1', value: 5 }], disposition: 1 }]),
  });
  t.equal(response.status, 201);
  const { id } = (await response.json()) as { id: string };
  const order = await device.takeOrder();
  t.equal(order.id, id);
  t.same(order.sections, [{ orders: [{ type: 'write', path: 'W1', value: 5 }], disposition: 1, id }]);
});
