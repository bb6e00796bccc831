import t from 'tap';
import { SimulatedClock, createActor } from 'xstate';
import { FrameType } from '../../src/protocol/frames.js';
import type { LogRecord } from '../../src/protocol/messages.js';
import type { HttpResult, TransmitEvent } from '../../machines/common.js';
import { type LogsInput, logsMachine } from '../../machines/logs.js';
import { manualPromise, settle } from '../helpers/machines.js';

const rec = (n: number): LogRecord => ({ service: 's', when: n, message: `m${n}`, level: 20 });
const whens = (rs: unknown) => (rs as LogRecord[]).map((r) => r.when);

function start(options: LogsInput['options'] = {}) {
  const frames: TransmitEvent['frame'][] = [];
  const post = manualPromise<{ records: LogRecord[] }, HttpResult>();
  const clock = new SimulatedClock();
  const actor = createActor(
    logsMachine.provide({ actors: { postLogs: post.logic }, actions: { report: (_, p) => void frames.push(p.frame) } }),
    { clock, input: { random: () => 0.5, options } },
  );
  actor.start();
  const log = (...ns: number[]) => actor.send({ type: 'LOG', records: ns.map(rec) });
  return { actor, clock, frames, post, log, ctx: () => actor.getSnapshot().context };
}

t.test('bounded buffer: the oldest records are dropped first, and counted', async (t) => {
  const l = start({ maxBuffered: 3, maxBatchRecords: 10 });
  l.log(1, 2);
  l.log(3, 4, 5);
  t.same(whens(l.ctx().buffer), [3, 4, 5]);
  t.equal(l.ctx().dropped, 2);
});

t.test('NGTT: LOGS frames with tid 0, on count and on age; none while the link is down', async (t) => {
  const l = start({ maxBatchRecords: 2, maxBatchAgeMs: 1000 });
  l.log(1, 2, 3);
  t.same(l.frames, [], 'held while there is no link');
  t.equal(l.actor.getSnapshot().value, 'due');
  l.actor.send({ type: 'LINK', link: 'ngtt' });
  t.same(l.frames.map((f) => [f.type, f.tid, whens(f.payload)]), [[FrameType.LOGS, 0, [1, 2]]]);
  l.clock.increment(999);
  t.equal(l.frames.length, 1);
  l.clock.increment(1);
  t.same(whens(l.frames[1].payload), [3], 'the rest goes when it is old enough');
  l.log(4);
  l.actor.send({ type: 'FLUSH' });
  t.same(whens(l.frames[2].payload), [4]);
  t.same(l.ctx().buffer, []);
});

t.test('HTTPS: PUT one batch at a time; 5xx retries with the records in front; 4xx drops', async (t) => {
  const l = start({ maxBatchRecords: 2, maxBatchAgeMs: 1000 });
  l.actor.send({ type: 'LINK', link: 'https' });
  l.log(1, 2, 3);
  await settle();
  t.same(l.post.calls.map((c) => whens(c.input.records)), [[1, 2]]);
  l.post.calls[0].resolve({ status: 502 });
  await settle();
  t.same(whens(l.ctx().buffer), [1, 2, 3], 'back at the front');
  l.clock.increment(1000);
  await settle();
  t.same(whens(l.post.calls[1].input.records), [1, 2]);
  l.post.calls[1].resolve({ status: 200 });
  await settle();
  l.clock.increment(1000);
  await settle();
  t.same(whens(l.post.calls[2].input.records), [3]);
  l.post.calls[2].resolve({ status: 413 });
  await settle();
  t.equal(l.ctx().dropped, 1);
  t.equal(l.actor.getSnapshot().value, 'idle');
});

t.test('a link change waits for the PUT in flight', async (t) => {
  const l = start({ maxBatchRecords: 1 });
  l.actor.send({ type: 'LINK', link: 'https' });
  l.log(1, 2);
  await settle();
  l.actor.send({ type: 'LINK', link: 'ngtt' });
  t.same(l.frames, []);
  l.post.calls[0].resolve({ status: 200 });
  await settle();
  t.same(l.frames.map((f) => whens(f.payload)), [[2]]);
  t.equal(l.post.calls.length, 1);
});
