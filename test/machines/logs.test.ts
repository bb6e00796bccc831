import t from 'tap';
import { SimulatedClock, createActor, fromPromise } from 'xstate';
import { FrameType } from '../../src/protocol/frames.js';
import type { LogRecord } from '../../src/protocol/messages.js';
import type { HttpResult, TransmitEvent } from '../../machines/common.js';
import { retrying } from '../../machines/http.js';
import { type LogsInput, type LogsReport, type NextLogs, LOGS_RECEIPT_TID, logsMachine } from '../../machines/logs.js';
import { manualPromise, settle } from '../helpers/machines.js';

const rec = (n: number): LogRecord => ({ service: 's', when: n, message: `m${n}`, level: 20 });
const whens = (rs: unknown) => (rs as LogRecord[]).map((r) => r.when);

/** The log buffer as the machine sees it: due at `max` records or `ageMs` after the oldest. */
function start(input: Partial<LogsInput> = {}, limits = { max: 2, ageMs: 1000 }) {
  const clock = new SimulatedClock();
  const buffer: LogRecord[] = [];
  let oldestAt = 0;
  const frames: TransmitEvent['frame'][] = [];
  const reports: LogsReport[] = [];
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
        report: (_, r) => void (r.type === 'TRANSMIT' ? frames.push(r.frame) : reports.push(r)),
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
  /** The LOGS frames sent so far (each is followed by its receipt PING). */
  const batches = () => frames.filter((f) => f.type === FrameType.LOGS).map((f) => whens(f.payload));
  const receipt = () => send({ type: 'LOGS.RECEIPT' });
  return { actor, frames, reports, batches, receipt, put, buffer, log, send, tick, ctx: () => actor.getSnapshot().context };
}

t.test('NGTT: LOGS frames with tid 0 when due, each followed by the PING whose echo is its receipt; none while the link is down', async (t) => {
  const l = start();
  await l.log(1, 2, 3);
  t.same(l.frames, [], 'held while there is no link');
  await l.send({ type: 'LINK', link: 'ngtt' });
  t.same(
    l.frames.map((f) => [f.type, f.tid]),
    [
      [FrameType.LOGS, 0],
      [FrameType.PING, LOGS_RECEIPT_TID],
    ],
  );
  t.same(l.batches(), [[1, 2]]);
  await l.receipt();
  t.same(l.reports, [{ type: 'LOGS.SETTLED', outcome: 'stored', records: 2 }]);
  await l.tick(999);
  t.equal(l.batches().length, 1);
  await l.tick(1);
  t.same(l.batches()[1], [3], 'the rest goes when it is old enough');
  await l.receipt();
  await l.log(4);
  await l.send({ type: 'FLUSH' });
  t.same(l.batches()[2], [4]);
  t.same(l.buffer, []);
});

t.test('NGTT: one batch out at a time until its receipt; a batch without receipt goes again, unchanged and first, on the next link', async (t) => {
  const l = start({ link: 'ngtt' });
  await l.log(1, 2, 3, 4, 5);
  t.same(l.batches(), [[1, 2]], 'the next waits for the receipt');
  await l.tick(60_000);
  t.same(l.batches(), [[1, 2]], 'however long it takes');
  await l.receipt();
  t.same(l.batches(), [
    [1, 2],
    [3, 4],
  ]);
  await l.send({ type: 'LINK', link: 'none' });
  t.same(whens(l.buffer), [5], 'the unproven batch is not merged back into the buffer');
  t.same(whens(l.ctx().sending), [3, 4], 'it is kept as it was');
  await l.log(6, 7);
  await l.send({ type: 'LINK', link: 'ngtt' });
  t.same(l.batches().slice(2), [[3, 4]], 'the same batch again, before newer records: the server knows it by its content');
  await l.receipt();
  t.same(l.batches().slice(3), [[5, 6]]);
  await l.receipt();
  t.equal(l.ctx().sent, 6);
  t.same(
    l.reports.map((r) => (r.type === 'LOGS.SETTLED' ? r.records : r.type)),
    [2, 2, 2],
  );
});

t.test('a batch that got no NGTT receipt goes over HTTPS unchanged when the link falls back', async (t) => {
  const l = start({ link: 'ngtt' }, { max: 3, ageMs: 1000 });
  await l.log(1, 2);
  await l.send({ type: 'FLUSH' });
  t.same(l.batches(), [[1, 2]]);
  await l.log(3);
  await l.send({ type: 'LINK', link: 'https' });
  t.same(whens(l.put.calls[0]?.input.records), [1, 2], 'the unproven batch, not re-cut with the newer record');
  l.put.calls[0].resolve({ status: 200 });
  await settle();
  t.same(l.reports.at(-1), { type: 'LOGS.SETTLED', outcome: 'stored', records: 2 });
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

t.test('a link change waits for the PUT in flight; a retry wait is cancelled and the batch is kept for the next link', async (t) => {
  const l = start({ link: 'https' }, { max: 1, ageMs: 1000 });
  await l.log(1, 2);
  await l.send({ type: 'LINK', link: 'ngtt' });
  t.same(l.frames, []);
  l.put.calls[0].resolve({ status: 200 });
  await settle();
  t.same(l.batches(), [[2]]);
  t.equal(l.put.calls.length, 1);

  const m = start({ link: 'https' }, { max: 1, ageMs: 1000 });
  await m.log(1);
  m.put.calls[0].resolve({ status: 503 });
  await settle();
  await m.send({ type: 'LINK', link: 'none' });
  t.same(whens(m.ctx().sending), [1], 'kept');
  await m.tick(60_000);
  t.equal(m.put.calls.length, 1, 'no more PUTs');
  await m.send({ type: 'LINK', link: 'https' });
  t.same(whens(m.put.calls[1]?.input.records), [1], 'sent again on the next link');
});
