import t from 'tap';
import { randomUUID } from 'node:crypto';
import type { OrderDelivery, RabbitBackbone } from '../../../src/server/rabbitmq/index.js';
import { brokerReachable, enqueue, readyCount, SKIP_REASON, testBackbone, uniquePrefix, waitFor } from '../../helpers/rabbitmq.js';

/** Opens a source that records what it receives and checks the window on every delivery. */
async function recordingSource(t: { teardown(fn: () => unknown): void }, bb: RabbitBackbone, deviceId: string, window = 4) {
  const got: OrderDelivery[] = [];
  const src = await bb.orders.openOrderSource(deviceId, { window });
  let maxUnsettled = 0;
  src.onOrder((o) => {
    got.push(o);
    maxUnsettled = Math.max(maxUnsettled, src.unsettled);
  });
  t.teardown(() => src.close());
  return { src, got, max: () => maxUnsettled };
}

const value = (o: OrderDelivery) => (o.sections[0].orders[0] as { value: number }).value;

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  for (const orderQueueType of ['quorum', 'classic'] as const) {
    t.test(`${orderQueueType} order queues`, async (t) => {
      t.test('enqueue → consume: never more than window unsettled; settle acks for good', async (t) => {
        const bb = await testBackbone(t, { orderQueueType });
        const dev = 'dev-a';
        const queue = bb.topology.ordersQueue(dev);
        const ids = await enqueue(bb, dev, 10);
        t.equal(await bb.orders.queuedOrderCount(dev), 10, '10 orders queued');

        const { src, got, max } = await recordingSource(t, bb, dev, 4);
        // The broker keeps 6 ready: prefetch = window is enforced on its side, not only ours.
        await waitFor(async () => got.length === 4 && (await readyCount(bb.connection, queue)) === 6, '4 delivered, 6 ready');
        t.same(got.map((o) => o.id), ids.slice(0, 4), 'first 4 in enqueue order, ids = message ids');
        t.same(got.map(value), [1, 2, 3, 4], 'sections decoded');
        t.equal(src.unsettled, 4);

        await src.settle(got[1].id); // ORDER_CONFIRM
        await src.settle(got[0].deliveryTag, { status: 'confirmed' }); // by delivery tag works too
        await waitFor(() => got.length === 6, '2 more after 2 settles');
        t.same(got.slice(4).map(value), [5, 6]);
        t.equal(src.unsettled, 4);

        await src.settle(got[1].id); // settling twice is a no-op
        await t.rejects(src.settle(randomUUID()), { name: 'UnknownOrderError' });

        for (let i = 2; ; i++) {
          await src.settle(got[i].id);
          if (i === 9) break;
          await waitFor(() => got.length > i + 1 || got.length === 10, `order ${i + 2}`);
        }
        t.equal(got.length, 10);
        t.same(got.map((o) => o.id), ids, 'all 10, each once, in order');
        t.ok(max() <= 4, `unsettled never above the window (max ${max()})`);
        t.equal(got.filter((o) => o.redelivered).length, 0, 'nothing redelivered');

        // Settled for good: after closing and reopening, a fresh order is the first thing seen.
        await src.close();
        t.equal(await bb.orders.queuedOrderCount(dev), 0, 'queue empty');
        const again = await recordingSource(t, bb, dev, 4);
        const [sentinel] = await enqueue(bb, dev, 1, 100);
        await waitFor(() => again.got.length === 1, 'sentinel');
        t.equal(again.got[0].id, sentinel, 'no settled order came back');
      });

      t.test('close with unsettled orders → redelivered to the next consumer, same ids, at the front', async (t) => {
        const bb = await testBackbone(t, { orderQueueType });
        const dev = 'dev-b';
        const ids = await enqueue(bb, dev, 6);
        const first = await recordingSource(t, bb, dev, 4);
        await waitFor(() => first.got.length === 4, '4 delivered');
        await first.src.settle(first.got[1].id); // #2 done
        await waitFor(() => first.got.length === 5, '#5 delivered');
        await first.src.close(); // device dropped with #1 #3 #4 #5 in flight

        // The queue applies the return shortly after the channel closed (a Raft command).
        await waitFor(async () => (await bb.orders.queuedOrderCount(dev)) === 5, '5 back in the queue');
        const second = await recordingSource(t, bb, dev, 4);
        await waitFor(() => second.got.length === 4, 'redeliveries');
        t.same(
          second.got.map((o) => o.id),
          [ids[0], ids[2], ids[3], ids[4]],
          'unsettled come back first, in their original order, with the same ids',
        );
        const count = orderQueueType === 'quorum' ? 1 : 0; // classic queues keep no delivery count
        t.ok(second.got.every((o) => o.redelivered && o.deliveryCount === count), `marked redelivered, x-delivery-count ${count}`);
        t.ok(second.got.every((o) => o.deliveries === 2), 'counted as the second delivery (the history counts it), classic queues included');
        await second.src.settle(second.got[0].id);
        await waitFor(() => second.got.length === 5, '#6');
        t.equal(second.got[4].id, ids[5], 'then the never-delivered one');
        t.notOk(second.got[4].redelivered);
      });

      t.test('single active consumer: a device connected twice gets each order on one connection only', async (t) => {
        const prefix = uniquePrefix();
        const gw1 = await testBackbone(t, { prefix, orderQueueType });
        const gw2 = await testBackbone(t, { prefix, orderQueueType }); // a second gateway process
        const dev = 'dev-c';
        const queue = gw1.topology.ordersQueue(dev);
        const ids = await enqueue(gw1, dev, 6);

        const a = await recordingSource(t, gw1, dev, 4);
        await waitFor(() => a.got.length === 4, 'A has 4');
        const b = await recordingSource(t, gw2, dev, 4);
        await a.src.settle(a.got[0].id);
        // B has free prefetch and 1 order is ready: if B were active it would get it.
        await waitFor(async () => a.got.length === 5 && (await readyCount(gw2.connection, queue)) === 1, 'A gets #5, 1 ready');
        t.equal(b.got.length, 0, 'B gets nothing while A is active');

        await a.src.close(); // A's connection to the device dropped
        await waitFor(() => b.got.length === 4, 'B takes over');
        t.same(b.got.map((o) => o.id), ids.slice(1, 5), 'B gets A’s unsettled orders, same ids, in order');
        await b.src.settle(b.got[0].id);
        await waitFor(() => b.got.length === 5, 'B gets #6');
        t.equal(b.got[4].id, ids[5]);
        const seenTwiceLive = a.got.slice(1).filter((o) => b.got.some((x) => x.id === o.id));
        t.equal(seenTwiceLive.length, 4, 'the overlap is exactly the orders A never settled (sequential, never concurrent)');
      });

      t.test('rejected orders are audited on the settled exchange; malformed input refused', async (t) => {
        const bb = await testBackbone(t, { orderQueueType });
        const dev = 'dev-d';
        await t.rejects(bb.orders.enqueueOrder(dev, [{ orders: [{ type: 'nope' }], disposition: 0 }] as never), {
          name: 'PayloadError',
        });
        t.equal(await bb.orders.queuedOrderCount('never-seen-device'), 0, 'no queue → 0, and none created');
        const [id1, id2] = await enqueue(bb, dev, 2);
        const { src, got } = await recordingSource(t, bb, dev, 4);
        await waitFor(() => got.length === 2, '2 delivered');
        await src.settle(id1, { status: 'rejected', reason: 'busy' });
        await src.settle(id2); // confirmed: not audited by default
        const audited = await bb.connection.withChannel(async (ch) => {
          const m = await ch.get(bb.topology.settledQueue, { noAck: true });
          const extra = await ch.get(bb.topology.settledQueue, { noAck: true });
          return { m, extra };
        });
        t.ok(audited.m, 'one audit record');
        if (audited.m) {
          t.equal(audited.m.properties.messageId, id1);
          t.equal(audited.m.properties.headers?.['x-ngtt-outcome'], 'rejected');
          t.equal(audited.m.properties.headers?.['x-ngtt-reason'], 'busy');
          t.equal(audited.m.properties.headers?.['x-ngtt-device'], dev);
          t.equal(audited.m.fields.routingKey, `rejected.${dev}`);
        }
        t.equal(audited.extra, false, 'confirmed order not audited');
        t.equal(await bb.orders.queuedOrderCount(dev), 0);
        t.throws(() => bb.topology.ordersQueue(''), RangeError);
      });

      t.test('window 1 delivers strictly one at a time', async (t) => {
        const bb = await testBackbone(t, { orderQueueType });
        const dev = 'dev-e';
        const ids = await enqueue(bb, dev, 3);
        const { src, got, max } = await recordingSource(t, bb, dev, 1);
        for (let i = 0; i < 3; i++) {
          await waitFor(() => got.length === i + 1, `order ${i + 1}`);
          await src.settle(got[i].id);
        }
        t.same(got.map((o) => o.id), ids);
        t.equal(max(), 1);
      });
    });
  }
}
