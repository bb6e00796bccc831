import t from 'tap';
import { SimulatedClock, createActor, fromPromise } from 'xstate';
import { FrameType } from '../../src/protocol/frames.js';
import type { LogRecord } from '../../src/protocol/messages.js';
import type { HttpResult, TransmitEvent } from '../../machines/common.js';
import { retrying } from '../../machines/http.js';
import { type LogsInput, type NextLogs, logsMachine } from '../../machines/logs.js';
import { manualPromise, settle } from '../helpers/machines.js';

const rec = (n: number): LogRecord => ({ service: 's', when: n, message: `m${n}`, level: 20 });
const whens = (rs: unknown) => (rs as LogRecord[]).map((r) => r.when);

/** The log buffer as the machine sees it: due at `max` records or `ageMs` after the oldest. */
function start(input: Partial<LogsInput> = {}, limits = { max: 2, ageMs: 1000 }) {
  const clock = new SimulatedClock();
  const buffer: LogRecord[] = [];
  let oldestAt = 0;
  const frames: TransmitEvent['frame'][] = [];
  const put = manualPromise<{ records: LogRecord[] }, HttpResult>();
  const nextLogs = fromPromise<NextLogs, { flush: boolean }>(async ({ input }) => {
    if (buffer.length === 0) return { records: [] };
    if (input.flush || buffer.length >= limits.max || clock.now() >= oldestAt + limits.ageMs) {
      const records = buffer.splice(0, limits.max);
      oldestAt = clock.now();
      return { records, dueInMs: buffer.length ? limits.ageMs : undefined };
    }
    return { records: [], dueInMs: oldestAt + limits.ageMs - clock.now() };
  });
  const actor = createActor(
    logsMachine.provide({
      actors: { nextLogs, postLogs: retrying(put.logic) },
      actions: {
        report: (_, r) => void (r.type === 'TRANSMIT' && frames.push(r.frame)),
        putBack: (_, { records }) => void buffer.unshift(...records),
      },
    }),
    { clock, input: { random: () => 0.5, ...input } },
  );
  actor.start();
  const log = async (...ns: number[]) => {
    if (buffer.length === 0) oldestAt = clock.now();
    buffer.push(...ns.map(rec));
    actor.send({ type: 'LOGS' });
    await settle();
  };
  const send = async (e: Parameters<typeof actor.send>[0]) => {
    actor.send(e);
    await settle();
  };
  const tick = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { actor, frames, put, buffer, log, send, tick, ctx: () => actor.getSnapshot().context };
}

t.test('NGTT: LOGS frames with tid 0 when due; none while the link is down', async (t) => {
  const l = start();
  await l.log(1, 2, 3);
  t.same(l.frames, [], 'held while there is no link');
  await l.send({ type: 'LINK', link: 'ngtt' });
  t.same(l.frames.map((f) => [f.type, f.tid, whens(f.payload)]), [[FrameType.LOGS, 0, [1, 2]]]);
  await l.send({ type: 'LOGS.SENT' });
  await l.tick(999);
  t.equal(l.frames.length, 1);
  await l.tick(1);
  t.same(whens(l.frames[1].payload), [3], 'the rest goes when it is old enough');
  await l.send({ type: 'LOGS.SENT' });
  await l.log(4);
  await l.send({ type: 'FLUSH' });
  t.same(whens(l.frames[2].payload), [4]);
  t.same(l.buffer, []);
});

t.test('NGTT backpressure: one LOGS frame on the socket at a time; records go back if the link drops first', async (t) => {
  const l = start({ link: 'ngtt' });
  await l.log(1, 2, 3, 4, 5);
  t.equal(l.frames.length, 1, 'the next waits until this one is flushed');
  await l.send({ type: 'LOGS.SENT' });
  t.equal(l.frames.length, 2);
  await l.send({ type: 'LINK', link: 'none' });
  t.same(whens(l.buffer), [3, 4, 5], 'not flushed when the link went: back in the buffer');
  await l.send({ type: 'LINK', link: 'ngtt' });
  t.same(whens(l.frames[2].payload), [3, 4]);
  t.equal(l.ctx().sent, 2);
});

t.test('HTTPS: PUT one batch at a time; 5xx retried; 4xx dropped and counted', async (t) => {
  const l = start({ link: 'https' });
  await l.log(1, 2, 3);
  t.same(l.put.calls.map((c) => whens(c.input.records)), [[1, 2]]);
  l.put.calls[0].resolve({ status: 502 });
  await settle();
  await l.tick(1000);
  t.same(whens(l.put.calls[1].input.records), [1, 2], 'the same records again');
  l.put.calls[1].resolve({ status: 200 });
  await settle();
  await l.tick(1000);
  t.same(whens(l.put.calls[2].input.records), [3]);
  l.put.calls[2].resolve({ status: 413 });
  await settle();
  t.equal(l.ctx().dropped, 1);
  t.equal(l.ctx().sent, 2);
  t.ok(l.actor.getSnapshot().matches({ https: 'idle' }));
});

t.test('a link change waits for the PUT in flight; a retry wait is cancelled and the records go back', async (t) => {
  const l = start({ link: 'https' }, { max: 1, ageMs: 1000 });
  await l.log(1, 2);
  await l.send({ type: 'LINK', link: 'ngtt' });
  t.same(l.frames, []);
  l.put.calls[0].resolve({ status: 200 });
  await settle();
  t.same(l.frames.map((f) => whens(f.payload)), [[2]]);
  t.equal(l.put.calls.length, 1);

  const m = start({ link: 'https' }, { max: 1, ageMs: 1000 });
  await m.log(1);
  m.put.calls[0].resolve({ status: 503 });
  await settle();
  await m.send({ type: 'LINK', link: 'none' });
  t.same(whens(m.buffer), [1], 'put back');
  await m.tick(60_000);
  t.equal(m.put.calls.length, 1, 'no more PUTs');
});
