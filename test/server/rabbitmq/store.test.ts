/**
 * RabbitStore behind startServer, in process: two "gateways" (servers) on one prefix, real
 * devices over NGTT/TLS. The two-process fleet tests are in gateways.test.ts.
 */
import t from 'tap';
import { FrameType } from '../../../src/protocol/index.js';
import { openRabbitStore, topology, type RabbitStore } from '../../../src/server/rabbitmq/index.js';
import { createMemoryStore } from '../../../src/server/store/index.js';
import { BROKER_URL, brokerReachable, cleanup, dropSocket, order, readyCount, SKIP_REASON, uniquePrefix, waitFor } from '../../helpers/rabbitmq.js';
import { makePki, startTestServer, type TestServer } from '../../helpers/server-fixture.js';

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  const pki = await makePki();
  const prefix = uniquePrefix();
  const devices = new Set<string>();
  const stores: RabbitStore[] = [];
  t.teardown(async () => {
    for (const s of stores) await s.close();
    await cleanup(topology({ prefix }), devices);
  });

  const gateway = async (t: Tap, sink = false, orderConnections = 1): Promise<{ server: TestServer; store: RabbitStore }> => {
    const store = await openRabbitStore({ url: BROKER_URL, prefix, local: createMemoryStore(), sink, orderConnections, connectionName: `${prefix}-gw`, reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
    stores.push(store);
    const server = await startTestServer(pki, { store });
    t.teardown(async () => {
      await server.close();
      await store.close();
    });
    return { server, store };
  };
  type Tap = { teardown(fn: () => unknown): void };

  t.test('enqueue on A, device on B: window = prefetch, settles acked, history on both', async (t) => {
    const a = await gateway(t, true);
    const b = await gateway(t);
    const dev = 'dev-s1';
    devices.add(dev);
    const ids: string[] = [];
    for (let i = 1; i <= 6; i++) ids.push(await a.server.enqueueOrder(dev, order(i)));
    t.equal((await a.store.listOrders(dev)).length, 6, 'A lists what it enqueued at once');
    await waitFor(async () => (await b.store.listOrders(dev)).length === 6, 'B to see the enqueues');

    const device = await b.server.connect(dev);
    t.teardown(() => device.destroy());
    device.send(0, FrameType.FETCH_ORDERS);
    const first = await device.takeOrders(4);
    t.same(first.map((o) => o.id), ids.slice(0, 4), 'the first window, in order');
    const queue = a.store.topology.ordersQueue(dev);
    await waitFor(async () => (await readyCount(a.store.backbone.connection, queue)) === 2, 'the broker to hold back 2 (prefetch = window)');
    await device.ping();
    t.equal(device.pending(FrameType.ORDER).length, 0, 'no fifth order before a settle');

    device.send(first[0].tid, FrameType.ORDER_CONFIRM);
    device.send(first[1].tid, FrameType.ORDER_REJECT, { reason: 'no' });
    const more = await device.takeOrders(2);
    t.same(more.map((o) => o.id), ids.slice(4, 6));
    await waitFor(async () => (await a.store.getOrder(ids[1]))?.state === 'rejected', 'A to see the reject');
    t.equal((await a.store.getOrder(ids[1]))?.reason, 'no');
    t.equal((await a.store.getOrder(ids[0]))?.state, 'confirmed');
    t.equal((await b.store.getOrder(ids[0]))?.state, 'confirmed', 'B recorded its own settle');

    // Cut off with 4 in flight: they go back, in order, to whoever consumes next.
    await device.destroy();
    await waitFor(async () => (await readyCount(a.store.backbone.connection, queue)) === 4, 'the 4 unsettled orders to be back');
    const polled = await a.store.takeQueuedOrders(dev);
    t.same(polled.map((o) => o.id), ids.slice(2), 'an HTTPS poll takes the returned orders, in order');
    t.ok(polled.every((o) => o.state === 'delivered'));
    t.equal(await readyCount(a.store.backbone.connection, queue), 0, 'and acks them');
    await waitFor(async () => (await b.store.getOrder(ids[5]))?.state === 'delivered', 'B to see the poll');
    t.same(await a.store.takeQueuedOrders('dev-never-seen'), [], 'no queue: nothing, and none created');
  });

  t.test('DATA_STREAM_CONFIRM after the broker confirm; the sink stores it', async (t) => {
    const a = await gateway(t, true);
    const b = await gateway(t);
    const dev = 'dev-s2';
    devices.add(dev);
    const device = await b.server.connect(dev);
    t.teardown(() => device.destroy());
    for (let tid = 1; tid <= 5; tid++) device.send(tid, FrameType.DATA_STREAM, [{ path: 'W1', values: [[tid, tid * 10]] }]);
    device.send(0, FrameType.LOGS, [{ service: 'svc', when: 1, message: 'hello', level: 20 }]);
    for (let tid = 1; tid <= 5; tid++) await device.takeType(FrameType.DATA_STREAM_CONFIRM, tid);
    await waitFor(async () => (await a.store.readData(dev)).length === 5, 'the sink on A to store the 5 batches');
    t.same((await a.store.readData(dev)).map((s) => s.values[0][0]).sort(), [1, 2, 3, 4, 5]);
    await waitFor(async () => (await a.store.readLogs(dev)).length === 1, 'the log record too');
    // A resend of the same batch (its confirm was lost) is confirmed again but stored once.
    device.send(6, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 10]] }]);
    device.send(7, FrameType.DATA_STREAM, [{ path: 'W1', values: [[7, 70]] }]);
    await device.takeType(FrameType.DATA_STREAM_CONFIRM, 6);
    await device.takeType(FrameType.DATA_STREAM_CONFIRM, 7);
    await waitFor(async () => (await a.store.readData(dev)).length === 6, 'the 7th batch');
    // One queue, one sink: batch 6 was consumed before batch 7, so it is settled by now.
    t.same((await a.store.readData(dev)).map((s) => s.values[0][0]).sort(), [1, 2, 3, 4, 5, 7], 'the resent batch once');
    t.same(await b.store.readData(dev), [], 'B runs no sink');
  });

  t.test('order sources spread over orderConnections', async (t) => {
    const g = await gateway(t, false, 2);
    const pool = (g.store as unknown as { pool: { open: number }[] }).pool;
    const devs = ['dev-p1', 'dev-p2', 'dev-p3'];
    for (const dev of devs) {
      devices.add(dev);
      await g.server.enqueueOrder(dev, order(1));
    }
    const conns = [];
    for (const dev of devs) {
      const d = await g.server.connect(dev);
      t.teardown(() => d.destroy());
      d.send(0, FrameType.FETCH_ORDERS);
      await d.takeOrder();
      conns.push(d);
    }
    t.same(pool.map((p) => p.open), [2, 1], 'least-loaded connection first');
    await conns[0].destroy();
    await waitFor(() => pool[0].open + pool[1].open === 2, 'the closed source to be counted off');
  });

  t.test('more than 10 devices with order sources open: no MaxListenersExceededWarning', async (t) => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void (w.name === 'MaxListenersExceededWarning' && warnings.push(w));
    process.on('warning', onWarning);
    t.teardown(() => void process.off('warning', onWarning));
    // Classic order queues: cheaper for the broker than 12 quorum queues (file handles).
    const store = await openRabbitStore({ url: BROKER_URL, prefix, local: createMemoryStore(), orderQueueType: 'classic', connectionName: `${prefix}-many` });
    stores.push(store);
    const sources: Awaited<ReturnType<RabbitStore['openOrderSource']>>[] = [];
    for (let i = 1; i <= 12; i++) {
      const dev = `dev-many-${i}`;
      devices.add(dev);
      sources.push(await store.openOrderSource(dev, { prefetch: 4 }));
    }
    await store.enqueueOrder('dev-many-12', order(1));
    await waitFor(async () => (await sources[11].next()) !== null, 'the 12th device to get its order');
    // Node emits the warning on the next tick after the listener that crosses the limit.
    await new Promise((resolve) => setImmediate(resolve));
    t.same(warnings.map((w) => w.message), [], 'no listener warning');
    for (const s of sources) await s.close();
    await store.close();
  });

  t.test('broker link lost: the gateway closes device connections and refuses new ones until it is back', async (t) => {
    const g = await gateway(t);
    const dev = 'dev-refuse';
    devices.add(dev);
    const device = await g.server.connect(dev);
    t.teardown(() => device.destroy());
    device.send(1, FrameType.LOGS, [{ service: 's', when: 1, message: 'before', level: 20 }]);
    device.send(2, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 1]] }]);
    await device.takeType(FrameType.DATA_STREAM_CONFIRM, 2);
    const changes: boolean[] = [];
    g.store.onAvailabilityChange((ok) => changes.push(ok));
    dropSocket(g.store.backbone.connection);
    await device.closed;
    t.same(changes.slice(0, 1), [false], 'unavailable while the broker link is down, and the device was let go');
    await waitFor(() => g.store.available(), 'the broker link to come back', 10_000);
    t.same(changes, [false, true]);
    const again = await g.server.connect(dev);
    t.teardown(() => again.destroy());
    again.send(3, FrameType.DATA_STREAM, [{ path: 'W1', values: [[3, 3]] }]);
    await again.takeType(FrameType.DATA_STREAM_CONFIRM, 3);
    t.pass('served again once the link is back');
  });
}
