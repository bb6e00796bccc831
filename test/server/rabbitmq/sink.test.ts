import t from 'tap';
import type { LogRecord, PathpointSeries } from '../../../src/protocol/index.js';
import { Sink, type SinkMeta } from '../../../src/server/rabbitmq/index.js';
import { brokerReachable, readyCount, SKIP_REASON, testBackbone, waitFor } from '../../helpers/rabbitmq.js';

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  t.test('sink receives every published batch exactly once and acks it', async (t) => {
    const bb = await testBackbone(t);
    const sent = new Map<string, { deviceId: string; body: unknown }>();
    const publishes: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const deviceId = `dev-${i % 5}`;
      const series: PathpointSeries[] = [{ path: `W${i}`, values: [[1_700_000_000_000 + i, i], [false, 1_700_000_000_001 + i, 'timeout']] }];
      publishes.push(bb.publisher.publishPathpoints(deviceId, series).then((id) => void sent.set(id, { deviceId, body: series })));
    }
    for (let i = 0; i < 50; i++) {
      const deviceId = `dev-${i % 5}`;
      const records: LogRecord[] = [{ service: 'svc', when: 1_700_000_000_000_000 + i, message: `line ${i}`, level: 20 }];
      publishes.push(bb.publisher.publishLogs(deviceId, records).then((id) => void sent.set(id, { deviceId, body: records })));
    }
    await Promise.all(publishes);

    const got: { kind: string; deviceId: string; body: unknown; meta: SinkMeta }[] = [];
    const sink = await Sink.start(
      bb.connection,
      {
        onPathpoints: async (deviceId, series, meta) => {
          await new Promise((r) => setImmediate(r)); // a store write
          got.push({ kind: 'pathpoints', deviceId, body: series, meta });
        },
        onLogs: (deviceId, records, meta) => void got.push({ kind: 'logs', deviceId, body: records, meta }),
      },
      { topology: bb.topology, prefetch: 32 },
    );
    t.teardown(() => sink.close());
    await waitFor(() => got.length >= 250, '250 batches');
    await sink.close();

    t.equal(got.length, 250, 'nothing twice');
    t.equal(new Set(got.map((g) => g.meta.messageId)).size, 250, 'each message id once');
    for (const g of got) {
      const s = sent.get(g.meta.messageId);
      if (!s) {
        t.fail(`unknown message ${g.meta.messageId}`);
        continue;
      }
      if (g.deviceId !== s.deviceId) t.fail(`device of ${g.meta.messageId}`);
      if (JSON.stringify(g.body) !== JSON.stringify(s.body)) t.fail(`body of ${g.meta.messageId}`);
    }
    t.equal(got.filter((g) => g.kind === 'logs').length, 50);
    t.equal(got.filter((g) => g.meta.redelivered).length, 0);
    t.equal(await readyCount(bb.connection, bb.topology.pathpointsQueue), 0, 'all acked: nothing returned on close');
    t.equal(await readyCount(bb.connection, bb.topology.logsQueue), 0);
  });

  t.test('a failing callback gets the batch again; a malformed batch is dropped to onInvalid', async (t) => {
    const bb = await testBackbone(t);
    const id = await bb.publisher.publishPathpoints('dev-x', [{ path: 'W1', values: [[1, 1]] }]);
    await bb.publisher.publish(bb.topology.pathpointsExchange, 'dev-x', new Uint8Array([0xff, 0xff]), { messageId: 'garbage' });
    const attempts: SinkMeta[] = [];
    const invalid: string[] = [];
    const sink = await Sink.start(
      bb.connection,
      {
        onPathpoints: (_d, _s, meta) => {
          attempts.push(meta);
          if (attempts.length === 1) throw new Error('store is down');
        },
        onInvalid: (kind, _err, msg) => void invalid.push(`${kind}:${String(msg.properties.messageId)}`),
      },
      { topology: bb.topology, retryDelayMs: 20 },
    );
    t.teardown(() => sink.close());
    await waitFor(() => attempts.length === 2 && invalid.length === 1, 'retry and invalid');
    await sink.close();
    t.same(attempts.map((m) => [m.messageId, m.redelivered]), [[id, false], [id, true]], 'same batch again, marked redelivered');
    t.same(invalid, ['pathpoints:garbage']);
    t.equal(await readyCount(bb.connection, bb.topology.pathpointsQueue), 0, 'both gone from the queue');
  });
}
