import t from 'tap';
import { SimulatedClock, createActor } from 'xstate';
import type { PathpointSeries } from '../../src/protocol/messages.js';
import type { HttpResult, TransmitEvent } from '../../machines/common.js';
import { type UploadInput, estimateBytes, nextTid, uploadMachine } from '../../machines/upload.js';
import { FakeSpool } from '../helpers/fake-spool.js';
import { manualPromise, settle } from '../helpers/machines.js';

const one = (path: string, ts: number, v: number): PathpointSeries[] => [{ path, values: [[ts, v]] }];

function start(input: Partial<UploadInput> & { firstBatchId?: number } = {}) {
  const { firstBatchId, ...machineInput } = input;
  const fake = new FakeSpool(firstBatchId);
  const trace = fake.trace;
  const spool = fake.batches;
  const post = manualPromise<{ id: number }, HttpResult>();
  let maxInFlight = 0;
  const clock = new SimulatedClock();
  const machine = uploadMachine.provide({
    actors: { cutBatch: fake.cutBatch, loadBatch: fake.loadBatch, postBatch: post.logic },
    actions: {
      batchConfirmed: (_, p) => void trace.push(`confirmed ${p.id}`),
      setAside: (_, p) => void trace.push(`aside ${p.id}: ${p.reason}`),
      report: (_, p: TransmitEvent) => void trace.push(`transmit tid ${p.frame.tid} ${JSON.stringify(p.frame.payload)}`),
    },
  });
  const actor = createActor(machine, { clock, input: { random: () => 0.5, ...machineInput } });
  actor.subscribe((s) => (maxInFlight = Math.max(maxInFlight, s.context.inFlight.length)));
  actor.start();
  /** Stores and reports the values, then lets the (promise) cut run. */
  const push = async (...series: PathpointSeries[][]) => {
    series.forEach((s) => actor.send(fake.push(s)));
    await settle();
  };
  const ctx = () => actor.getSnapshot().context;
  const take = () => trace.splice(0);
  const tick = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { actor, clock, tick, trace, take, push, ctx, post, spool, fake, maxInFlight: () => maxInFlight };
}

t.test('flush on count: values of the same path are merged, the batch gets the next id', async (t) => {
  const u = start({ options: { maxBatchValues: 3 }, firstBatchId: 41 });
  await u.push(one('W1', 1, 10), one('W2', 1, 20));
  t.same(u.take(), []);
  t.ok(u.actor.getSnapshot().matches({ collecting: 'open' }));
  await u.push(one('W1', 2, 11));
  t.same(u.take(), ['spool 41 (3)']);
  t.same(u.spool.get(41), [
    { path: 'W1', values: [[1, 10], [2, 11]] },
    { path: 'W2', values: [[1, 20]] },
  ]);
  t.same(u.ctx().queue, [41]);
  t.ok(u.actor.getSnapshot().matches({ collecting: 'empty' }));
});

t.test('flush on bytes', async (t) => {
  const a = [{ path: 'S1', values: [[1, 'x'.repeat(100)]] }] as PathpointSeries[];
  const b = [{ path: 'S2', values: [[1, 'y'.repeat(100)]] }] as PathpointSeries[];
  const u = start({ options: { maxBatchBytes: estimateBytes([...a, ...b]) } });
  await u.push(a);
  t.same(u.take(), []);
  await u.push(b);
  t.same(u.take(), ['spool 1 (2)']);
});

t.test('flush on age, and on FLUSH', async (t) => {
  const u = start({ options: { maxBatchAgeMs: 5000 } });
  await u.push(one('W1', 1, 1));
  await u.tick(4999);
  await u.push(one('W1', 2, 2));
  t.same(u.take(), []);
  await u.tick(1);
  t.same(u.take(), ['spool 1 (2)'], 'age counts from the first value');
  await u.push(one('W1', 3, 3));
  u.actor.send({ type: 'FLUSH' });
  await settle();
  t.same(u.take(), ['spool 2 (1)']);
  u.actor.send({ type: 'FLUSH' });
  await settle();
  await u.tick(10_000);
  t.same(u.take(), [], 'nothing to flush: no empty batches');
});

t.test('NGTT pipelining: never more than `window` in flight; answers free slots', async (t) => {
  const u = start({ options: { maxBatchValues: 1, window: 3 } });
  for (let i = 1; i <= 5; i++) await u.push(one('W1', i, i));
  u.take();
  u.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.same(u.take(), [
    'transmit tid 1 [{"path":"W1","values":[[1,1]]}]',
    'transmit tid 2 [{"path":"W1","values":[[2,2]]}]',
    'transmit tid 3 [{"path":"W1","values":[[3,3]]}]',
  ]);
  t.same(u.ctx().inFlight, [{ id: 1, tid: 1 }, { id: 2, tid: 2 }, { id: 3, tid: 3 }]);
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 2 });
  await settle();
  t.same(u.take(), ['confirmed 2', 'transmit tid 4 [{"path":"W1","values":[[4,4]]}]']);
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 99 });
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 2 });
  await settle();
  t.same(u.take(), [], 'unknown and repeated answers are ignored');
  u.actor.send({ type: 'BATCH.REJECTED', tid: 1, reason: 'malformed' });
  await settle();
  t.same(u.take(), ['aside 1: malformed', 'transmit tid 5 [{"path":"W1","values":[[5,5]]}]']);
  for (const tid of [3, 4, 5]) u.actor.send({ type: 'BATCH.CONFIRMED', tid });
  await settle();
  t.same(u.take(), ['confirmed 3', 'confirmed 4', 'confirmed 5']);
  t.equal(u.maxInFlight(), 3);
  t.match(u.ctx(), { queue: [], inFlight: [], confirmed: 4, rejected: 1 });
});

t.test('NGTT: unanswered batches are resent after a reconnect; rejected ones never', async (t) => {
  const u = start({ options: { maxBatchValues: 1, window: 8 }, pending: [7] });
  u.spool.set(7, one('OLD', 0, 0));
  await u.push(one('W1', 1, 1), one('W1', 2, 2), one('W1', 3, 3));
  u.take();
  u.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.same(u.take().map((s) => s.slice(0, 14)), ['transmit tid 1', 'transmit tid 2', 'transmit tid 3', 'transmit tid 4'], 'the batch spooled by an earlier run goes first');
  t.same(u.ctx().inFlight.map((b) => b.id), [7, 1, 2, 3]);
  u.actor.send({ type: 'BATCH.REJECTED', tid: 2 });
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 4 });
  t.same(u.take(), ['aside 1: rejected', 'confirmed 3']);
  u.actor.send({ type: 'LINK', link: 'none' });
  t.same(u.ctx().queue, [2, 7].sort((a, b) => a - b), 'unanswered back in the queue, oldest first');
  t.ok(u.actor.getSnapshot().matches({ link: 'offline' }));
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 1 });
  t.same(u.take(), [], 'a late answer from the old connection is ignored');
  u.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.same(u.take(), ['transmit tid 5 [{"path":"W1","values":[[2,2]]}]', 'transmit tid 6 [{"path":"OLD","values":[[0,0]]}]']);
});

t.test('backpressure: tag `full` while the spool is full; due batches wait, nothing is dropped', async (t) => {
  const u = start({ options: { maxBatchValues: 1, maxSpooledBatches: 2 } });
  await u.push(one('W1', 1, 1));
  t.notOk(u.actor.getSnapshot().hasTag('full'));
  await u.push(one('W1', 2, 2));
  t.ok(u.actor.getSnapshot().hasTag('full'));
  await u.push(one('W1', 3, 3), one('W1', 4, 4));
  t.same(u.take(), ['spool 1 (1)', 'spool 2 (1)']);
  t.ok(u.actor.getSnapshot().matches({ collecting: 'ready', spool: 'full' }));
  t.equal(u.ctx().open.values, 2, 'left unbatched in the spool');
  u.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  u.take();
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 1 });
  await settle();
  t.same(u.take(), ['confirmed 1', 'spool 3 (1)', 'transmit tid 3 [{"path":"W1","values":[[3,3]]}]'], 'one batch per free slot, within maxBatchValues');
  t.ok(u.actor.getSnapshot().hasTag('full'), 'full again: 2 and 3 are unconfirmed');
  u.actor.send({ type: 'BATCH.CONFIRMED', tid: 2 });
  await settle();
  t.same(u.take(), ['confirmed 2', 'spool 4 (1)', 'transmit tid 4 [{"path":"W1","values":[[4,4]]}]']);
  t.equal(u.ctx().open.values, 0);
});

t.test('one huge PUSH is cut into batches within the limits', async (t) => {
  const u = start({ options: { maxBatchValues: 400, maxBatchAgeMs: 1000 } });
  const values = Array.from({ length: 1000 }, (_, i) => [i, i] as [number, number]);
  await u.push([{ path: 'W1', values }]);
  t.same(u.take(), ['spool 1 (400)', 'spool 2 (400)'], 'full batches at once');
  t.equal(u.ctx().open.values, 200, 'the rest waits for more values or its age');
  await u.tick(1000);
  t.same(u.take(), ['spool 3 (200)']);
  const big = [{ path: 'S1', values: Array.from({ length: 10 }, (_, i) => [i, 'x'.repeat(100)]) }] as PathpointSeries[];
  const b = start({ options: { maxBatchBytes: 400 } });
  await b.push(big);
  b.actor.send({ type: 'FLUSH' });
  await settle();
  const cuts = b.take();
  t.ok(cuts.length >= 3, `cut by bytes: ${cuts.join(', ')}`);
  t.equal([...b.spool.values()].reduce((n, s) => n + s[0].values.length, 0), 10, 'every value in exactly one batch');
});

t.test('restart: pending batches go first, unbatched values are cut', async (t) => {
  const u = start({ pending: [7], unbatched: { values: 1, bytes: 30 }, firstBatchId: 8, options: { maxBatchAgeMs: 1000 } });
  u.spool.set(7, one('OLD', 0, 0));
  u.fake.unbatched.push({ path: 'W1', value: [1, 1] });
  await u.tick(1000);
  t.same(u.take(), ['spool 8 (1)']);
  t.same(u.ctx().queue, [7, 8]);
});

t.test('HTTPS: one POST at a time; 2xx confirms, 4xx sets aside, 5xx and errors retry with backoff', async (t) => {
  const u = start({ options: { maxBatchValues: 1 } });
  await u.push(one('W1', 1, 1), one('W1', 2, 2), one('W1', 3, 3));
  u.take();
  u.actor.send({ type: 'LINK', link: 'https' });
  await settle();
  t.same(u.post.calls.map((c) => c.input.id), [1], 'only one POST');
  u.post.calls[0].resolve({ status: 503 });
  await settle();
  t.ok(u.actor.getSnapshot().matches({ link: { https: 'retryWait' } }));
  await u.tick(999);
  t.equal(u.post.calls.length, 1);
  await u.tick(1);
  t.same(u.post.calls.map((c) => c.input.id), [1, 1], 'retried after 1 s');
  u.post.calls[1].reject(new Error('ECONNREFUSED'));
  await settle();
  t.equal(u.ctx().retryMs, 2000, 'backoff doubles');
  await u.tick(2000);
  u.post.calls[2].resolve({ status: 204 });
  await settle();
  t.same(u.post.calls.map((c) => c.input.id), [1, 1, 1, 2]);
  u.post.calls[3].resolve({ status: 400 });
  await settle();
  u.post.calls[4].resolve({ status: 200 });
  await settle();
  t.same(u.take(), ['confirmed 1', 'aside 2: HTTP 400', 'confirmed 3']);
  t.same(u.post.calls.map((c) => c.input.id), [1, 1, 1, 2, 3], 'the refused batch is not posted again');
  t.equal(u.ctx().retries, 0);
});

t.test('HTTPS → NGTT: the POST in flight finishes first; nothing is lost or sent twice', async (t) => {
  const u = start({ options: { maxBatchValues: 1 } });
  await u.push(one('W1', 1, 1), one('W1', 2, 2));
  u.take();
  u.actor.send({ type: 'LINK', link: 'https' });
  await settle();
  u.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.same(u.take(), [], 'no DATA_STREAM while the POST is out');
  t.ok(u.actor.getSnapshot().matches({ link: { https: 'posting' } }));
  u.post.calls[0].resolve({ status: 200 });
  await settle();
  t.same(u.take(), ['confirmed 1', 'transmit tid 1 [{"path":"W1","values":[[2,2]]}]']);
  t.equal(u.post.calls.length, 1);

  // NGTT → HTTPS: the unanswered DATA_STREAM is posted instead.
  u.actor.send({ type: 'LINK', link: 'https' });
  await settle();
  t.same(u.post.calls.map((c) => c.input.id), [1, 2]);
});

t.test('HTTPS retry wait is left at once when the link changes', async (t) => {
  const u = start({ options: { maxBatchValues: 1 } });
  await u.push(one('W1', 1, 1));
  u.actor.send({ type: 'LINK', link: 'https' });
  await settle();
  u.post.calls[0].resolve({ status: 500 });
  await settle();
  u.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.match(u.take(), ['spool 1 (1)', /^transmit tid 1/]);
});

t.test('nextTid wraps and skips tids in use', async (t) => {
  t.equal(nextTid(0, []), 1);
  t.equal(nextTid(0x7ffe, []), 1);
  t.equal(nextTid(0x7ffd, [{ tid: 0x7ffe }, { tid: 1 }]), 2);
});
