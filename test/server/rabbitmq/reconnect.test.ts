import t from 'tap';
import { PublishError, Sink, type OrderDelivery } from '../../../src/server/rabbitmq/index.js';
import {
  brokerReachable,
  dropSocket,
  enqueue,
  hasRabbitmqctl,
  order,
  rabbitmqctlClose,
  SKIP_REASON,
  testBackbone,
  waitFor,
} from '../../helpers/rabbitmq.js';

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  t.test('abrupt loss of the broker connection: reconnect, orders neither lost nor handed out twice', async (t) => {
    const bb = await testBackbone(t);
    const dev = 'dev-r';
    const sunk: string[] = [];
    const sink = await Sink.start(bb.connection, { onPathpoints: (_d, _s, meta) => void sunk.push(meta.messageId) }, { topology: bb.topology });
    t.teardown(() => sink.close());

    const ids = await enqueue(bb, dev, 6);
    const src = await bb.orders.openOrderSource(dev, { window: 4 });
    t.teardown(() => src.close());
    const got: OrderDelivery[] = [];
    src.onOrder((o) => void got.push(o));
    await waitFor(() => got.length === 4, '4 in flight');

    const batch = (i: number) => [{ path: 'W1', values: [[1_700_000_000_000 + i, i] as [number, number]] }];
    const before = await Promise.all(Array.from({ length: 20 }, (_, i) => bb.publisher.publishPathpoints(dev, batch(i))));
    // Data in flight when the link dies: every publish settles, none hangs.
    const inFlight = Array.from({ length: 100 }, (_, i) =>
      bb.publisher.publishPathpoints(dev, batch(100 + i)),
    );
    const generation = bb.connection.generation;
    // The device confirms #2 while the broker connection is down (no channel to ack on) ...
    const settledWhileDown = new Promise<void>((resolve, reject) =>
      bb.connection.once('disconnected', () => src.settle(got[1].id).then(resolve, reject)),
    );
    dropSocket(bb.connection);
    // ... and #1 just as it goes down (the ack goes to a dead socket and is lost).
    await src.settle(got[0].id);
    await settledWhileDown;
    t.equal(src.unsettled, 2, 'the window slots are free at once');

    const outcomes = await Promise.allSettled(inFlight);
    const confirmed = [...before, ...outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []))];
    const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    t.ok(
      failed.every((f) => f.reason instanceof PublishError && f.reason.reason === 'channel-closed'),
      `unconfirmed publishes reject with channel-closed (${failed.length} of 100)`,
    );

    await waitFor(() => bb.connection.generation > generation, 'reconnect');
    await waitFor(() => got.length === 6, 'orders #5 and #6 after the reconnect');
    t.same(
      got.map((o) => o.id),
      ids,
      '#3 and #4 (still on the device) were not handed out again; #1 and #2 (settled around the outage) were acked, not re-sent',
    );
    t.equal(src.unsettled, 4);
    for (const o of got.slice(2)) await src.settle(o.id);
    t.equal(src.unsettled, 0);
    await src.close();

    // Nothing is left: a fresh source sees a fresh order first.
    const again = await bb.orders.openOrderSource(dev, { window: 4 });
    t.teardown(() => again.close());
    const later: string[] = [];
    again.onOrder((o) => void later.push(o.id));
    const sentinel = await bb.orders.enqueueOrder(dev, order(99));
    await waitFor(() => later.length >= 1, 'sentinel');
    t.same(later, [sentinel], 'all six orders were settled for good across the reconnect');

    // Publishing and the sink work on the new connection; everything confirmed got through.
    const after = await bb.publisher.publishPathpoints(dev, [{ path: 'W2', values: [[1_700_000_001_000, 1]] }]);
    await waitFor(() => sunk.includes(after) && confirmed.every((id) => sunk.includes(id)), 'sink has every confirmed batch');
    t.pass(`sink received the ${confirmed.length} batches confirmed before the drop and the one after`);
  });

  const ctl = await hasRabbitmqctl();
  t.test('broker closes the connection (rabbitmqctl close_connection): reconnect and carry on', { skip: ctl ? false : 'rabbitmqctl not available' }, async (t) => {
    const bb = await testBackbone(t);
    const dev = 'dev-f';
    const ids = await enqueue(bb, dev, 3);
    const src = await bb.orders.openOrderSource(dev, { window: 2 });
    t.teardown(() => src.close());
    const got: string[] = [];
    src.onOrder((o) => void got.push(o.id));
    await waitFor(() => got.length === 2, '2 in flight');

    const disconnected = new Promise((r) => bb.connection.once('disconnected', r));
    const generation = bb.connection.generation;
    await rabbitmqctlClose(bb.connection);
    await disconnected;
    await waitFor(() => bb.connection.generation > generation && bb.connection.connected, 'reconnect', 10_000);

    await src.settle(ids[0]);
    await waitFor(() => got.length === 3, '#3 after settling #1 on the new connection', 10_000);
    t.same(got, ids, 'no duplicates, nothing lost');
    await src.settle(ids[1]);
    await src.settle(ids[2]);
    await bb.publisher.publishLogs(dev, [{ service: 's', when: 1, message: 'back', level: 20 }]);
    t.pass('publisher works on the new connection');
    await src.close();
    await waitFor(async () => (await bb.orders.queuedOrderCount(dev)) === 0, 'queue empty');
  });
}
