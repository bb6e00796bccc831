import t from 'tap';
import { SimulatedClock, createActor } from 'xstate';
import type { PathpointSeries } from '../../src/protocol/messages.js';
import type { HttpResult } from '../../machines/common.js';
import { retrying } from '../../machines/http.js';
import { type PostBatchInput, type UploadInput, type UploadReport, nextTid, uploadMachine } from '../../machines/upload.js';
import { FakeSpool, payloadOf } from '../helpers/fake-spool.js';
import { manualPromise, settle } from '../helpers/machines.js';

const one = (path: string, ts: number, v: number): PathpointSeries[] => [{ path, values: [[ts, v]] }];

function start(input: Partial<UploadInput> = {}, limits = { maxValues: 1, maxAgeMs: 5000 }, before?: (spool: FakeSpool) => void) {
  const clock = new SimulatedClock();
  const spool = new FakeSpool(() => clock.now(), limits);
  before?.(spool);
  const trace = spool.trace;
  const reports: UploadReport[] = [];
  const post = manualPromise<PostBatchInput, HttpResult>();
  let maxInFlight = 0;
  const machine = uploadMachine.provide({
    actors: { nextBatches: spool.nextBatches, settleBatches: spool.settleBatches, postBatch: retrying(post.logic) },
    actions: {
      report: (_, r) => {
        reports.push(r);
        if (r.type === 'TRANSMIT') trace.push(`transmit tid ${r.frame.tid} ${JSON.stringify(payloadOf(r.frame.encoded))}`);
        else if (r.type === 'FAULT' || r.type === 'RECOVERED') trace.push(`${r.type} ${r.source}`);
      },
    },
  });
  const actor = createActor(machine, { clock, input: { random: () => 0.5, ...input } });
  actor.subscribe((s) => (maxInFlight = Math.max(maxInFlight, s.context.inFlight.length)));
  actor.start();
  /** Stores the values and tells the machine, then lets its promise actors run. */
  const push = async (...series: PathpointSeries[][]) => {
    for (const s of series) spool.push(s);
    actor.send({ type: 'DATA' });
    await settle();
  };
  const send = async (event: Parameters<typeof actor.send>[0]) => {
    actor.send(event);
    await settle();
  };
  const tick = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  const take = () => trace.splice(0);
  const ctx = () => actor.getSnapshot().context;
  return { actor, clock, spool, reports, post, push, send, tick, take, ctx, maxInFlight: () => maxInFlight };
}

t.test('NGTT pipelining: never more than `window` in flight; answers free slots and are settled', async (t) => {
  const u = start({ options: { window: 3 } });
  await u.push(...[1, 2, 3, 4, 5].map((i) => one('W1', i, i)));
  t.same(u.take(), [], 'nothing formed without a link');
  await u.send({ type: 'LINK', link: 'ngtt' });
  t.same(u.take(), [
    'spool 1 (1)',
    'spool 2 (1)',
    'spool 3 (1)',
    'transmit tid 1 [{"path":"W1","values":[[1,1]]}]',
    'transmit tid 2 [{"path":"W1","values":[[2,2]]}]',
    'transmit tid 3 [{"path":"W1","values":[[3,3]]}]',
  ], 'one ask fills the window');
  t.same(u.ctx().inFlight, [{ id: 1, tid: 1 }, { id: 2, tid: 2 }, { id: 3, tid: 3 }]);
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 2, outcome: 'confirmed' }] });
  t.same(u.take(), ['spool 4 (1)', 'confirmed 2', 'transmit tid 4 [{"path":"W1","values":[[4,4]]}]']);
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 99, outcome: 'confirmed' }] });
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 2, outcome: 'confirmed' }] });
  t.same(u.take(), [], 'unknown and repeated answers are ignored');
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 1, outcome: 'rejected', reason: 'malformed' }] });
  t.same(u.take(), ['spool 5 (1)', 'aside 1: malformed', 'transmit tid 5 [{"path":"W1","values":[[5,5]]}]']);
  // Answers come in groups (one read of the socket): one event, one settling.
  await u.send({ type: 'BATCH.ANSWERED', answers: [3, 77, 4, 5].map((tid) => ({ tid, outcome: 'confirmed' as const })) });
  t.same(u.take(), ['confirmed 3', 'confirmed 4', 'confirmed 5']);
  t.equal(u.maxInFlight(), 3);
  t.match(u.ctx(), { inFlight: [], settling: [], confirmed: 4, rejected: 1 });
  t.match(
    u.reports.filter((r) => r.type === 'BATCH.SETTLED'),
    [
      { id: 2, outcome: 'confirmed', values: 1 },
      { id: 1, outcome: 'rejected', reason: 'malformed', values: 1 },
      { id: 3, outcome: 'confirmed' },
      { id: 4, outcome: 'confirmed' },
      { id: 5, outcome: 'confirmed' },
    ],
  );
});

t.test('when a batch is due is the spool’s business: the machine asks again at the time it names, and on FLUSH', async (t) => {
  const u = start({ link: 'ngtt' }, { maxValues: 3, maxAgeMs: 5000 });
  await settle();
  await u.push(one('W1', 1, 1));
  t.same(u.take(), []);
  t.ok(u.actor.getSnapshot().matches({ link: { ngtt: 'waiting' } }), 'values pending, not due');
  await u.tick(4999);
  await u.push(one('W1', 2, 2));
  t.same(u.take(), []);
  await u.tick(1);
  t.same(u.take(), ['spool 1 (2)', 'transmit tid 1 [{"path":"W1","values":[[1,1],[2,2]]}]'], 'due 5 s after the first value');
  await u.push(one('W1', 3, 3), one('W2', 3, 3), one('W1', 4, 4));
  t.same(u.take(), ['spool 2 (3)', 'transmit tid 2 [{"path":"W1","values":[[3,3],[4,4]]},{"path":"W2","values":[[3,3]]}]'], 'due at once when full');
  await u.push(one('W1', 5, 5));
  await u.send({ type: 'FLUSH' });
  t.same(u.take(), ['spool 3 (1)', 'transmit tid 3 [{"path":"W1","values":[[5,5]]}]']);
  t.equal(u.ctx().flush, false, 'the FLUSH is over once nothing is pending');
  await u.tick(60_000);
  t.same(u.take(), [], 'nothing pending: no empty batches, no asking');
});

t.test('NGTT: unanswered batches go out again after a reconnect, same content; settled ones never', async (t) => {
  const u = start({ options: { window: 8 } });
  u.spool.hold(7, one('OLD', 0, 0));
  u.spool.nextId = 8;
  await u.push(one('W1', 1, 1), one('W1', 2, 2), one('W1', 3, 3));
  await u.send({ type: 'LINK', link: 'ngtt' });
  t.same(
    u.take().filter((x) => x.startsWith('transmit')).map((x) => x.slice(0, 20)),
    ['transmit tid 1 [{"pa', 'transmit tid 2 [{"pa', 'transmit tid 3 [{"pa', 'transmit tid 4 [{"pa'],
  );
  t.same(u.ctx().inFlight.map((b) => b.id), [7, 8, 9, 10], 'the batch the spool held from an earlier run goes first');
  u.actor.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 2, outcome: 'rejected' }] });
  u.actor.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 4, outcome: 'confirmed' }] });
  await settle();
  t.same(u.take(), ['aside 8: rejected', 'confirmed 10']);
  await u.send({ type: 'LINK', link: 'none' });
  t.ok(u.actor.getSnapshot().matches({ link: 'offline' }));
  t.same(u.ctx().inFlight, []);
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 1, outcome: 'confirmed' }] });
  t.same(u.take(), [], 'a late answer from the old connection is ignored');
  await u.send({ type: 'LINK', link: 'ngtt' });
  t.same(u.take(), ['transmit tid 5 [{"path":"OLD","values":[[0,0]]}]', 'transmit tid 6 [{"path":"W1","values":[[2,2]]}]'], 'oldest first, tids run on');
});

t.test('a batch answered but not yet settled is not handed out again', async (t) => {
  const u = start({ link: 'ngtt', options: { window: 1 } });
  await settle();
  u.spool.failSettles = 1;
  await u.push(one('W1', 1, 1), one('W1', 2, 2));
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 1, outcome: 'confirmed' }] });
  t.same(u.take(), ['spool 1 (1)', 'transmit tid 1 [{"path":"W1","values":[[1,1]]}]', 'spool 2 (1)', 'transmit tid 2 [{"path":"W1","values":[[2,2]]}]', 'FAULT upload.settle']);
  t.ok(u.actor.getSnapshot().hasTag('faulted'), 'settling failed: visible as a tag');
  t.same(u.ctx().settling, [{ id: 1, outcome: 'confirmed', reason: undefined }]);
  await u.send({ type: 'BATCH.ANSWERED', answers: [{ tid: 2, outcome: 'confirmed' }] });
  t.same(u.take(), [], 'batch 1 is still waiting to be settled: not resent');
  await u.tick(1000);
  t.same(u.take(), ['confirmed 1', 'confirmed 2', 'RECOVERED upload.settle'], 'retried after the backoff, together');
  t.notOk(u.actor.getSnapshot().hasTag('faulted'));
});

t.test('a spool that fails to hand out batches: FAULT, asked again with backoff, RECOVERED', async (t) => {
  const u = start({ link: 'ngtt' });
  await settle();
  u.spool.failAsks = 2;
  await u.push(one('W1', 1, 1));
  t.same(u.take(), ['FAULT upload.spool']);
  t.ok(u.actor.getSnapshot().matches({ link: { ngtt: 'failed' } }));
  await u.tick(1000);
  t.same(u.take(), ['FAULT upload.spool']);
  t.equal(u.ctx().retryMs, 2000, 'the backoff doubles');
  await u.tick(1999);
  t.same(u.take(), []);
  await u.tick(1);
  t.same(u.take(), ['spool 1 (1)', 'RECOVERED upload.spool', 'transmit tid 1 [{"path":"W1","values":[[1,1]]}]']);
  t.match(u.reports.find((r) => r.type === 'FAULT'), { error: 'spool: disk I/O error' });
});

t.test('HTTPS: one POST at a time; 2xx confirms, 4xx sets aside, 5xx and errors retry with backoff', async (t) => {
  const u = start();
  await u.push(one('W1', 1, 1), one('W1', 2, 2), one('W1', 3, 3));
  await u.send({ type: 'LINK', link: 'https' });
  t.same(u.post.calls.map((c) => c.input.id), [1], 'only one POST');
  t.same(payloadOf(u.post.calls[0].input.encoded), one('W1', 1, 1));
  u.post.calls[0].resolve({ status: 503 });
  await settle();
  await u.tick(999);
  t.equal(u.post.calls.length, 1);
  await u.tick(1);
  t.same(u.post.calls.map((c) => c.input.id), [1, 1], 'retried after 1 s');
  u.post.calls[1].reject(new Error('ECONNREFUSED'));
  await settle();
  await u.tick(1999);
  t.equal(u.post.calls.length, 2);
  await u.tick(1);
  t.equal(u.post.calls.length, 3, 'then after 2 s');
  u.post.calls[2].resolve({ status: 200 });
  await settle();
  t.same(u.post.calls.map((c) => c.input.id), [1, 1, 1, 2]);
  u.post.calls[3].resolve({ status: 400 });
  await settle();
  u.post.calls[4].resolve({ status: 200 });
  await settle();
  t.same(u.take(), ['spool 1 (1)', 'spool 2 (1)', 'confirmed 1', 'spool 3 (1)', 'aside 2: HTTP 400', 'confirmed 3']);
  t.same(u.post.calls.map((c) => c.input.id), [1, 1, 1, 2, 3], 'the refused batch is not posted again');
});

t.test('HTTPS → NGTT: the POST in flight finishes first; nothing is lost or sent twice', async (t) => {
  const u = start();
  await u.push(one('W1', 1, 1), one('W1', 2, 2));
  await u.send({ type: 'LINK', link: 'https' });
  await u.send({ type: 'LINK', link: 'ngtt' });
  t.same(u.take(), ['spool 1 (1)'], 'no DATA_STREAM while the POST is out');
  t.ok(u.actor.getSnapshot().matches({ link: { https: 'posting' } }));
  u.post.calls[0].resolve({ status: 200 });
  await settle();
  t.same(u.take(), ['confirmed 1', 'spool 2 (1)', 'transmit tid 1 [{"path":"W1","values":[[2,2]]}]']);
  t.equal(u.post.calls.length, 1);

  // NGTT → HTTPS: the unanswered DATA_STREAM is posted instead.
  await u.send({ type: 'LINK', link: 'https' });
  t.same(u.post.calls.map((c) => c.input.id), [1, 2]);
});

t.test('HTTPS retries stop at once when the link changes; the batch goes out on the new link', async (t) => {
  const u = start();
  await u.push(one('W1', 1, 1));
  await u.send({ type: 'LINK', link: 'https' });
  u.post.calls[0].resolve({ status: 500 });
  await settle();
  await u.send({ type: 'LINK', link: 'ngtt' });
  t.same(u.take(), ['spool 1 (1)', 'transmit tid 1 [{"path":"W1","values":[[1,1]]}]']);
  await u.tick(60_000);
  t.equal(u.post.calls.length, 1, 'no more POSTs');
});

t.test('a (re)started machine starts on the link it is given and asks the spool at once', async (t) => {
  const u = start({ link: 'ngtt' }, undefined, (spool) => {
    spool.hold(3, one('W1', 1, 1));
    spool.nextId = 4;
    spool.push(one('W1', 2, 2));
  });
  await settle();
  t.same(u.take(), ['spool 4 (1)', 'transmit tid 1 [{"path":"W1","values":[[1,1]]}]', 'transmit tid 2 [{"path":"W1","values":[[2,2]]}]'], 'what the spool held goes first; no state handed in');
});

t.test('nextTid wraps and skips tids in use', async (t) => {
  t.equal(nextTid(0, []), 1);
  t.equal(nextTid(0x7ffe, []), 1);
  t.equal(nextTid(0x7ffd, [{ tid: 0x7ffe }, { tid: 1 }]), 2);
});
