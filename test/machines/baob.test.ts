/** The BAOB sync machine alone, on a simulated clock: when it syncs, over which transport, and how failures are retried. */
import t from 'tap';
import { SimulatedClock, createActor } from 'xstate';
import { FrameType } from '../../src/protocol/frames.js';
import type { HttpResult } from '../../machines/common.js';
import { type ApplyBaobPlanInput, type BaobReport, type BaobSyncSummary, BAOB_SYNC_TID, baobMachine, parseBaobPlan, retrying } from '../../machines/index.js';
import { manualPromise, settle } from '../helpers/machines.js';

function start(link: 'none' | 'ngtt' | 'https' = 'none') {
  const clock = new SimulatedClock();
  const reports: BaobReport[] = [];
  const reads = manualPromise<void, Record<string, number>>();
  const plans = manualPromise<{ versions: Record<string, number> }, HttpResult>();
  const applies = manualPromise<ApplyBaobPlanInput, BaobSyncSummary>();
  const machine = baobMachine.provide({
    actors: { localVersions: reads.logic, planHttps: retrying(plans.logic), applyPlan: applies.logic },
    actions: { report: (_, params: BaobReport) => void reports.push(params) },
  });
  const actor = createActor(machine, { clock, input: { random: () => 0.5, retry: { baseMs: 1000, maxMs: 8000 }, link, answerTimeoutMs: 5000 } });
  actor.start();
  const tick = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  const of = <T extends BaobReport['type']>(type: T) => reports.filter((r) => r.type === type) as Extract<BaobReport, { type: T }>[];
  return { actor, reports, reads, plans, applies, tick, of };
}

const none: BaobSyncSummary = { downloaded: [], uploaded: [], deleted: [] };

t.test('NGTT: request on the reserved tid, answer applied; no answer in time is a fault, retried with backoff', async (t) => {
  const m = start();
  await settle();
  t.equal(m.reads.calls.length, 0, 'no link, no sync');
  m.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  m.reads.calls[0].resolve({ a: 1, b: 0 });
  await settle();
  t.same(m.of('TRANSMIT'), [{ type: 'TRANSMIT', frame: { type: FrameType.SYNC_BAOB_REQUEST, tid: BAOB_SYNC_TID, payload: { a: 1, b: 0 } } }]);

  await m.tick(5000);
  t.match(m.of('FAULT'), [{ source: 'baob', error: /no SYNC_BAOB_RESPONSE within 5000 ms/ }]);
  t.match(m.of('FAULT')[0].error, /retrying in 1000 ms/, 'the shared backoff: 1 s first');
  await m.tick(999);
  t.equal(m.reads.calls.length, 1, 'waits the backoff');
  await m.tick(1);
  t.equal(m.reads.calls.length, 2, 'then syncs again');
  m.reads.calls[1].resolve({ a: 1, b: 0 });
  await settle();
  await m.tick(5000);
  t.match(m.of('FAULT')[1].error, /retrying in 2000 ms/, 'doubling');
  await m.tick(2000);
  m.reads.calls[2].resolve({ a: 1, b: 0 });
  await settle();

  m.actor.send({ type: 'BAOB.ANSWER', tid: 5, payload: { download: ['x'], upload: [] } });
  await settle();
  t.equal(m.applies.calls.length, 0, 'an answer on another tid is not ours');
  m.actor.send({ type: 'BAOB.ANSWER', tid: BAOB_SYNC_TID, payload: { download: ['a'], upload: ['c'], delete: ['b'] } });
  await settle();
  t.same(m.applies.calls[0].input, { download: ['a'], upload: ['c'], delete: ['b'], versions: { a: 1, b: 0 } }, 'the plan with the versions the server was told');
  m.applies.calls[0].resolve({ downloaded: ['a'], uploaded: ['c'], deleted: ['b'] });
  await settle();
  t.same(m.of('BAOB.SYNCED'), [{ type: 'BAOB.SYNCED', seq: 0, downloaded: ['a'], uploaded: ['c'], deleted: ['b'] }]);
  t.same(m.of('RECOVERED'), [{ type: 'RECOVERED', source: 'baob' }]);
  await m.tick(120_000);
  t.equal(m.reads.calls.length, 3, 'nothing more until asked');
});

t.test('HTTPS: POST plan through the retry machine; a refused transfer fails the sync and it is retried', async (t) => {
  const m = start('https');
  await settle();
  m.reads.calls[0].resolve({ k: 3 });
  await settle();
  t.same(m.plans.calls[0].input, { versions: { k: 3 } });
  m.plans.calls[0].resolve({ status: 503 });
  await settle();
  await m.tick(1000);
  t.equal(m.plans.calls.length, 2, 'a 5xx is retried by the HTTP retry machine');
  m.plans.calls[1].resolve({ status: 200, body: { should_download: [], should_upload: ['k'], should_delete: [] } });
  await settle();
  m.applies.calls[0].reject(new Error('BAOB transfers refused: PUT k (version 3): HTTP 409'));
  await settle();
  t.match(m.of('FAULT'), [{ source: 'baob', error: /HTTP 409/ }], 'one fault: the 503 was the retry machine\'s business');
  await m.tick(1000);
  t.equal(m.reads.calls.length, 2, 'synced again after the backoff');

  m.reads.calls[1].resolve({ k: 3 });
  await settle();
  m.plans.calls[2].resolve({ status: 400, body: { status: 'bad' } });
  await settle();
  t.match(m.of('FAULT')[1], { error: /POST \/v1\/device\/baobs refused: HTTP 400/ }, 'a 4xx is a failure of the sync');
});

t.test('requests during a sync make one more sync; SYNCED names the newest request covered', async (t) => {
  const m = start('https');
  await settle();
  m.actor.send({ type: 'SYNC', seq: 1 });
  m.actor.send({ type: 'SYNC', seq: 2 });
  m.reads.calls[0].resolve({});
  await settle();
  m.plans.calls[0].resolve({ status: 200, body: { should_download: [], should_upload: [], should_delete: [] } });
  await settle();
  m.applies.calls[0].resolve(none);
  await settle();
  t.same(m.of('BAOB.SYNCED').map((r) => r.seq), [0], 'the first sync started before the requests');
  t.equal(m.reads.calls.length, 2, 'one more sync for both requests');
  m.reads.calls[1].resolve({});
  await settle();
  m.plans.calls[1].resolve({ status: 200, body: { should_download: [], should_upload: [], should_delete: [] } });
  await settle();
  m.applies.calls[1].resolve(none);
  await settle();
  t.same(m.of('BAOB.SYNCED').map((r) => r.seq), [0, 2]);
  t.equal(m.reads.calls.length, 2);
});

t.test('the link going while waiting for the answer ends the attempt; the next link syncs', async (t) => {
  const m = start('ngtt');
  await settle();
  m.reads.calls[0].resolve({});
  await settle();
  m.actor.send({ type: 'LINK', link: 'none' });
  await m.tick(10_000);
  t.equal(m.of('FAULT').length, 0, 'not a fault');
  t.equal(m.reads.calls.length, 1);
  m.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.equal(m.reads.calls.length, 2);
  m.reads.calls[1].resolve({});
  await settle();
  m.actor.send({ type: 'BAOB.ANSWER', tid: BAOB_SYNC_TID, payload: 'garbage' });
  await settle();
  t.match(m.of('FAULT'), [{ error: /not an object/ }], 'an unusable answer is a fault');
});

t.test('parseBaobPlan reads both transports and refuses anything else', async (t) => {
  t.same(parseBaobPlan({ should_download: ['a'], should_upload: [], should_delete: ['b'] }), { download: ['a'], upload: [], delete: ['b'] });
  t.same(parseBaobPlan({ download: ['a'], upload: ['c'] }), { download: ['a'], upload: ['c'], delete: [] }, 'the spec response has no delete');
  t.throws(() => parseBaobPlan([]));
  t.throws(() => parseBaobPlan({ status: 'x' }));
});

t.test('a new link ends the backoff wait at once; the backoff keeps growing', async (t) => {
  const m = start('ngtt');
  await settle();
  m.reads.calls[0].resolve({});
  await settle();
  await m.tick(5000);
  t.match(m.of('FAULT')[0].error, /retrying in 1000 ms/);
  m.actor.send({ type: 'LINK', link: 'none' });
  await m.tick(500);
  m.actor.send({ type: 'LINK', link: 'ngtt' });
  await settle();
  t.equal(m.reads.calls.length, 2, 'reconnected: synced without waiting the rest of the backoff');
  m.reads.calls[1].resolve({});
  await settle();
  await m.tick(5000);
  t.match(m.of('FAULT')[1].error, /retrying in 2000 ms/, 'the failure count was kept');
});
