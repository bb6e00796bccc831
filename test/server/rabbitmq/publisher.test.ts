import t from 'tap';
import { encode } from '../../../src/minijson/index.js';
import type { PathpointSeries } from '../../../src/protocol/index.js';
import { PublishError } from '../../../src/server/rabbitmq/index.js';
import { brokerReachable, readyCount, SKIP_REASON, testBackbone } from '../../helpers/rabbitmq.js';

const batch = (i: number): PathpointSeries[] => [{ path: 'W1', values: [[1_700_000_000_000 + i, i]] }];

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  t.test('many publishes in flight at once; each resolves once the broker has it', async (t) => {
    const bb = await testBackbone(t);
    const n = 500;
    const pending: Promise<string>[] = [];
    for (let i = 0; i < n; i++) pending.push(bb.publisher.publishPathpoints(`dev-${i % 7}`, batch(i)));
    t.equal(bb.publisher.inFlight, n, 'all 500 were sent before any confirm came back (pipelined)');
    const ids = await Promise.all(pending);
    t.equal(new Set(ids).size, n, 'each publish got its own message id');
    t.equal(bb.publisher.inFlight, 0);
    t.equal(await readyCount(bb.connection, bb.topology.pathpointsQueue), n, 'every confirmed batch is in the durable queue');
    await bb.publisher.publishLogs('dev-1', [{ service: 'x', when: 1, message: 'hi', level: 20 }]);
    t.equal(await readyCount(bb.connection, bb.topology.logsQueue), 1);
  });

  t.test('channel backpressure: while the write buffer is full, further publishes wait for drain', async (t) => {
    const bb = await testBackbone(t);
    // amqplib buffers up to 1 024 frames per channel before publish() says "wait".
    const n = 3000;
    const pending: Promise<string>[] = [];
    for (let i = 0; i < n; i++) pending.push(bb.publisher.publishLogs('dev-bp', [{ service: 's', when: i, message: 'm', level: 20 }]));
    const handedToChannel = bb.publisher.inFlight;
    t.ok(handedToChannel < n, `only ${handedToChannel} of ${n} messages went to the channel before it asked to wait`);
    await Promise.all(pending);
    t.equal(await readyCount(bb.connection, bb.topology.logsQueue), n, 'the waiting ones followed after drain; all confirmed');
  });

  t.test('the promise carries the broker’s answer: nack and unroutable reject', async (t) => {
    const bb = await testBackbone(t);
    const x = `${bb.topology.prefix}.tiny`;
    const unbound = `${bb.topology.prefix}.unbound`;
    await bb.connection.withChannel(async (ch) => {
      await ch.assertExchange(x, 'direct', { durable: false, autoDelete: false });
      await ch.assertExchange(unbound, 'direct', { durable: false });
      await ch.assertQueue(x, { durable: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
      await ch.bindQueue(x, x, 'k');
    });
    t.teardown(() =>
      bb.connection.withChannel(async (ch) => {
        await ch.deleteQueue(x);
        await ch.deleteExchange(x);
        await ch.deleteExchange(unbound);
      }),
    );
    const results = await Promise.allSettled([1, 2, 3].map((i) => bb.publisher.publish(x, 'k', encode(i))));
    t.same(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'rejected'],
      'a full queue (reject-publish) nacks: only the first resolves',
    );
    const reasons = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as PublishError).reason] : []));
    t.same(reasons, ['nacked', 'nacked']);

    await t.rejects(bb.publisher.publish(unbound, 'nowhere', encode(1)), { name: 'PublishError', reason: 'unroutable' });
    // The channel is still fine afterwards.
    await bb.publisher.publishPathpoints('dev-1', batch(1));
    t.pass('publisher still works after nacks and returns');
  });
}
