import t from 'tap';
import { type AnyActorRef, SimulatedClock, createActor, enqueueActions, fromPromise } from 'xstate';
import { FrameType, frameTypeName } from '../../src/protocol/frames.js';
import type { LogRecord, PathpointDeclaration } from '../../src/protocol/messages.js';
import type { HttpResult } from '../../machines/common.js';
import {
  type ApplyBaobPlanInput,
  type BaobSyncSummary,
  BAOB_SYNC_TID,
  baobMachine,
  type ExecuteInput,
  type NextLogs,
  type OrderOutcome,
  type PostBatchInput,
  type SupervisorEmitted,
  type SupervisorInput,
  connectionMachine,
  LOGS_RECEIPT_TID,
  logsMachine,
  orderMachine,
  retrying,
  splitPolled,
  supervisorMachine,
  uploadMachine,
} from '../../machines/index.js';
import { FakeSpool, payloadOf } from '../helpers/fake-spool.js';
import { type FakeSocket, fakeSocketActor, manualPromise, settle } from '../helpers/machines.js';

const order = (id: string, path = 'W1') => [{ id, orders: [{ type: 'read', path }], disposition: 0 }];

interface Faults {
  /** How often the upload machine's `report` action throws (Infinity: always). */
  uploadReport?: number;
  /** Order keys whose `report` action throws. */
  orderReport?: string[];
}

function start(input: Partial<SupervisorInput> = {}, faults: Faults = {}) {
  const sockets: FakeSocket[] = [];
  const emitted: SupervisorEmitted[] = [];
  const clock = new SimulatedClock();
  const spool = new FakeSpool(() => clock.now(), { maxValues: 1, maxAgeMs: 5000 });
  const trace = spool.trace;
  const seen = new Map<string, OrderOutcome>();
  const logBuffer: LogRecord[] = [];
  const polls = manualPromise<void, unknown>();
  const posts = manualPromise<PostBatchInput, HttpResult>();
  const executes = manualPromise<ExecuteInput, void>();
  const declares = manualPromise<{ declarations: PathpointDeclaration[] }, HttpResult>();
  const configs = manualPromise<void, HttpResult>();
  const logPuts = manualPromise<{ records: LogRecord[] }, HttpResult>();
  const baobPlans = manualPromise<{ versions: Record<string, number> }, HttpResult>();
  const baobReads = manualPromise<void, Record<string, number>>();
  let uploadThrows = faults.uploadReport ?? 0;
  const machine = supervisorMachine.provide({
    actors: {
      connection: connectionMachine.provide({ actors: { socket: fakeSocketActor(sockets) } }),
      upload: uploadMachine.provide({
        actors: { nextBatches: spool.nextBatches, settleBatches: spool.settleBatches, postBatch: retrying(posts.logic) },
        // A provided action that throws: the upload machine fails, its supervisor must restart it.
        actions: faults.uploadReport
          ? {
              report: enqueueActions(({ enqueue, system }, params) => {
                if (uploadThrows-- > 0) throw new Error('injected fault');
                enqueue.sendTo(system.get('supervisor') as AnyActorRef, params);
              }),
            }
          : {},
      }),
      logs: logsMachine.provide({
        actors: {
          nextLogs: fromPromise<NextLogs, { flush: boolean }>(async ({ input }) => ({ records: input.flush || logBuffer.length >= 10 ? logBuffer.splice(0) : [] })),
          postLogs: retrying(logPuts.logic),
        },
      }),
      order: orderMachine.provide({
        actors: {
          checkExecuted: fromPromise<OrderOutcome | null, { id: string }>(async ({ input }) => seen.get(input.id) ?? null),
          execute: executes.logic,
          recordOutcome: fromPromise<void, { id: string; outcome: OrderOutcome }>(async ({ input }) => void seen.set(input.id, input.outcome)),
        },
        actions: faults.orderReport
          ? {
              report: enqueueActions(({ enqueue, system, context }, params) => {
                if (params.type === 'ORDER.DONE' && faults.orderReport!.includes(context.key)) throw new Error(`injected fault in ${context.key}`);
                enqueue.sendTo(system.get('supervisor') as AnyActorRef, params);
              }),
            }
          : {},
      }),
      // BAOB sync waits for the test to hand it the local versions (test/machines/baob.test.ts covers the machine).
      baob: baobMachine.provide({
        actors: {
          localVersions: baobReads.logic,
          planHttps: retrying(baobPlans.logic),
          applyPlan: fromPromise<BaobSyncSummary, ApplyBaobPlanInput>(async () => ({ downloaded: [], uploaded: [], deleted: [] })),
        },
      }),
      pollOrders: polls.logic,
      fetchConfig: retrying(configs.logic),
      declarePathpoints: retrying(declares.logic),
    },
  });
  const actor = createActor(machine, { clock, systemId: 'supervisor', input: { random: () => 0.5, graceMs: 10_000, pollIntervalMs: 5_000, ...input } });
  actor.on('*', (e) => void emitted.push(e));
  actor.start();
  const snap = () => actor.getSnapshot();
  const child = (id: 'upload' | 'logs' | 'connection') => (snap().children[id] as AnyActorRef).getSnapshot();
  const last = () => sockets[sockets.length - 1];
  /** Frames written on a socket, as NAME:tid. */
  const wire = (s = last()) => s.commands.map((c) => (c.type === 'SEND' ? `${frameTypeName(c.frame.type)}:${c.frame.tid}` : c.type));
  const push = (ts: number) => {
    spool.push([{ path: 'W1', values: [[ts, ts]] }]);
    actor.send({ type: 'DATA' });
  };
  const tick = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  const events = (type: SupervisorEmitted['type']) => emitted.filter((e) => e.type === type);
  return { actor, clock, sockets, trace, emitted, events, spool, logBuffer, polls, posts, executes, declares, configs, logPuts, baobPlans, baobReads, snap, child, last, wire, push, tick };
}

t.test('NGTT disabled (the default): HTTPS polling and posting, no socket', async (t) => {
  const s = start();
  await settle();
  t.same(s.snap().value, { ngtt: 'disabled', upload: 'running', logs: 'running', baob: 'running', route: { https: 'polling' }, config: 'fetching', declarations: 'idle' });
  t.equal(s.sockets.length, 0);
  t.same(s.events('TRANSPORT'), [{ type: 'TRANSPORT', transport: 'https' }]);
  s.configs.calls[0].resolve({ status: 200, body: { device_id: 'dev-1' } });
  await settle();
  t.same(s.events('CONFIG'), [{ type: 'CONFIG', config: { device_id: 'dev-1' } }]);

  t.equal(s.polls.calls.length, 1, 'polls at once');
  s.polls.calls[0].resolve(order('A'));
  await settle();
  t.same(s.executes.calls.map((c) => c.input.id), ['A']);
  s.executes.calls[0].resolve();
  await settle();
  t.same(
    s.emitted.filter((e) => e.type.startsWith('ORDER')).map((e) => e.type),
    ['ORDER.RECEIVED', 'ORDER.EXECUTING', 'ORDER.DONE'],
    'the runtime hears every step from emitted events',
  );
  t.match(s.events('ORDER.DONE'), [{ via: 'https', id: 'A', outcome: 'acked' }]);
  t.same(s.snap().context.orders, [], 'the finished order actor is gone');
  t.equal(s.snap().children['order-1'], undefined);

  await s.tick(4_999);
  t.equal(s.polls.calls.length, 1);
  await s.tick(1);
  t.equal(s.polls.calls.length, 2, 'polls every pollIntervalMs');
  s.polls.calls[1].resolve([]);
  await settle();
  t.equal(s.executes.calls.length, 1, 'an empty poll spawns nothing');

  s.push(1);
  await settle();
  t.same(s.posts.calls.map((c) => c.input.id), [1], 'data goes over HTTPS');
  s.posts.calls[0].resolve({ status: 200 });
  await settle();
  t.match(s.events('BATCH.SETTLED'), [{ id: 1, outcome: 'confirmed', values: 1 }]);
  s.logBuffer.push({ service: 'x', when: 1, message: 'hi', level: 20 });
  s.actor.send({ type: 'LOGS' });
  s.actor.send({ type: 'FLUSH' });
  await settle();
  t.equal(s.logPuts.calls.length, 1, 'logs go over HTTPS');
});

t.test('a poll answer with several orders: one actor each; one failing does not reject the others', async (t) => {
  const s = start();
  await settle();
  s.polls.calls[0].resolve([...order('A', 'W1'), ...order('B', 'W2'), { id: 'B', orders: [{ type: 'read', path: 'W3' }], disposition: 0 }]);
  await settle();
  t.same(s.executes.calls.map((c) => [c.input.id, c.input.sections.length]), [['A', 1], ['B', 2]], 'consecutive sections of one id are one order');
  s.executes.calls[0].reject(new Error('W1: timeout'));
  s.executes.calls[1].resolve();
  await settle();
  t.match(s.events('ORDER.DONE'), [
    { id: 'A', outcome: 'rejected', reason: 'W1: timeout' },
    { id: 'B', outcome: 'acked' },
  ]);
  t.same(s.events('ORDER.RECEIVED').map((e) => (e as { key: string }).key), ['order-1', 'order-2']);
  t.same(splitPolled('garbage'), ['garbage'], 'a payload that is not a list is one (malformed) order');
  t.same(splitPolled([{ orders: [] }, { orders: [] }]), [[{ orders: [] }, { orders: [] }]], 'sections without ids are one order');
});

t.test('NGTT up: orders, data and logs over NGTT; FETCH_ORDERS first', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  t.match(s.snap().value, { ngtt: { enabled: 'running' }, route: 'grace' });
  t.equal(s.polls.calls.length, 0, 'no polling while waiting for NGTT');
  t.equal(s.child('upload').context.link, 'none');
  s.last().emit({ type: 'SOCKET.OPEN' });
  t.same(s.snap().value.route, 'ngtt');
  t.equal(s.child('upload').context.link, 'ngtt');
  t.same(s.wire(), ['FETCH_ORDERS:0']);
  t.same(s.events('CONNECTION.STATE').map((e) => (e as { state: string }).state), ['connecting', 'authenticated']);

  s.push(1);
  s.logBuffer.push({ service: 'x', when: 1, message: 'hi', level: 20 });
  s.actor.send({ type: 'LOGS' });
  s.actor.send({ type: 'FLUSH' });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'DATA_STREAM:1', `LOGS:0`, `PING:${LOGS_RECEIPT_TID}`], 'the LOGS frame, then the PING whose echo is its receipt');
  const data = s.last().commands[1];
  t.same(payloadOf(data.type === 'SEND' ? data.frame.encoded : undefined), [{ path: 'W1', values: [[1, 1]] }]);
  t.equal(s.child('logs').context.sent, 0, 'not stored before the receipt');
  s.last().frame({ type: FrameType.DATA_STREAM_CONFIRM, tid: 1 });
  s.last().frame({ type: FrameType.PING, tid: LOGS_RECEIPT_TID });
  await settle();
  t.same(s.trace, ['spool 1 (1)', 'confirmed 1']);
  t.equal(s.child('logs').context.sent, 1, 'the echo is the receipt');
  t.same(s.events('LOGS.SETTLED'), [{ type: 'LOGS.SETTLED', outcome: 'stored', records: 1 }]);
  t.notOk(s.events('FRAME').length, 'the receipt is not passed on as an unknown frame');

  s.last().frame({ type: FrameType.ORDER, tid: 4, payload: order('A') });
  await settle();
  t.equal(s.executes.calls.length, 1);
  s.executes.calls[0].resolve();
  await settle();
  t.same(s.wire().slice(4), ['ORDER_CONFIRM:4']);

  s.last().frame({ type: FrameType.ORDER, tid: 5, payload: order('B') });
  await settle();
  s.executes.calls[1].reject(new Error('no such pathpoint'));
  await settle();
  const reject = s.last().commands.at(-1);
  t.same(reject, { type: 'SEND', frame: { type: FrameType.ORDER_REJECT, tid: 5, payload: { reason: 'no such pathpoint' } } });

  s.last().frame({ type: 99, tid: 9, payload: 'x' });
  t.match(s.emitted.at(-1), { type: 'FRAME', frame: { type: 99, tid: 9 } }, 'other frames go to the runtime');
  t.equal(s.polls.calls.length, 0, 'never polled');
});

t.test('device configuration and pathpoint declarations always go over HTTPS; 4xx is not retried', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  const decl = [{ path: 'W1', storage_level: 1 }];
  s.actor.send({ type: 'DECLARE', seq: 1, declarations: decl });
  s.configs.calls[0].resolve({ status: 403, body: { status: 'unknown device' } });
  await settle();
  t.same(s.declares.calls.map((c) => c.input.declarations), [decl]);
  t.same(s.events('CONFIG.REFUSED'), [{ type: 'CONFIG.REFUSED', status: 403 }]);
  t.same(s.wire(), ['FETCH_ORDERS:0'], 'nothing of it on the NGTT connection');

  s.declares.calls[0].reject(new Error('ECONNRESET'));
  await settle();
  await s.tick(1000);
  t.equal(s.declares.calls.length, 2, 'retried after the backoff');
  s.declares.calls[1].resolve({ status: 200 });
  await settle();
  t.same(s.events('DECLARED'), [{ type: 'DECLARED', seq: 1 }]);
  await s.tick(120_000);
  t.equal(s.configs.calls.length, 1, 'a 4xx is not retried');

  s.actor.send({ type: 'REFRESH_CONFIG' });
  await settle();
  s.configs.calls[1].resolve({ status: 200, body: { device_id: 'dev-1' } });
  await settle();
  t.same(s.events('CONFIG'), [{ type: 'CONFIG', config: { device_id: 'dev-1' } }]);
});

t.test('a newer declaration replaces one that is still being retried', async (t) => {
  const s = start();
  await settle();
  s.actor.send({ type: 'DECLARE', seq: 1, declarations: [{ path: 'W1', storage_level: 1 }] });
  await settle();
  s.declares.calls[0].resolve({ status: 503 });
  await settle();
  s.actor.send({ type: 'DECLARE', seq: 2, declarations: [{ path: 'W2', storage_level: 1 }] });
  await settle();
  t.same(s.declares.calls.map((c) => c.input.declarations[0].path), ['W1', 'W2'], 'the retry of W1 is cancelled; W2 goes at once');
  s.declares.calls[1].resolve({ status: 422 });
  await settle();
  t.same(s.events('DECLARE.REFUSED'), [{ type: 'DECLARE.REFUSED', seq: 2, status: 422 }]);
  await s.tick(60_000);
  t.equal(s.declares.calls.length, 2);
});

t.test('NGTT down past the grace period → HTTPS, then back to NGTT without loss or duplicates', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.push(1);
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'DATA_STREAM:1']);

  s.last().emit({ type: 'SOCKET.CLOSED', error: 'ETIMEDOUT' }); // t = 0; DATA_STREAM 1 unanswered
  t.same(s.snap().value.route, 'grace');
  t.equal(s.child('upload').context.link, 'none');
  t.same(s.child('upload').context.inFlight, [], 'the unanswered batch is the spool’s again');
  s.push(2);
  await s.tick(1000); // reconnect attempt 2: leave it hanging in connecting
  await s.tick(8_999);
  t.same(s.snap().value.route, 'grace');
  t.equal(s.posts.calls.length + s.polls.calls.length, 0, 'nothing over HTTPS within the grace period');
  await s.tick(1); // t = 10 s
  t.same(s.snap().value.route, { https: 'polling' });
  t.equal(s.polls.calls.length, 1);
  t.same(s.posts.calls.map((c) => c.input.id), [1], 'spooled data goes over HTTPS, one POST at a time');

  s.last().emit({ type: 'SOCKET.OPEN' }); // NGTT is back while the poll and the POST are out
  t.same(s.snap().value.route, { https: 'polling' }, 'the poll in flight finishes first');
  s.polls.calls[0].resolve([]);
  await settle();
  t.same(s.snap().value.route, 'ngtt');
  t.same(s.wire(), ['FETCH_ORDERS:0'], 'the POST in flight is not duplicated on NGTT');
  s.posts.calls[0].resolve({ status: 200 });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'DATA_STREAM:2'], 'only batch 2, over NGTT (the tid cursor runs on)');
  s.last().frame({ type: FrameType.DATA_STREAM_CONFIRM, tid: 2 });
  await settle();
  t.same(s.trace, ['spool 1 (1)', 'confirmed 1', 'spool 2 (1)', 'confirmed 2'], 'each batch confirmed once');
  t.equal(s.posts.calls.length, 1);
  t.same(s.events('TRANSPORT').map((e) => (e as { transport: string }).transport), ['none', 'ngtt', 'none', 'https', 'ngtt']);
});

t.test('NGTT back within the grace period: no HTTPS at all', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.last().emit({ type: 'SOCKET.CLOSED' });
  await s.tick(1000);
  s.last().emit({ type: 'SOCKET.OPEN' });
  await s.tick(60_000);
  t.same(s.snap().value.route, 'ngtt');
  t.equal(s.polls.calls.length, 0);
});

t.test('orders across a reconnect: acked once, on the live connection, with the live tid', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.last().frame({ type: FrameType.ORDER, tid: 3, payload: order('A') });
  s.last().frame({ type: FrameType.ORDER, tid: 4, payload: order('B') });
  await settle();
  t.equal(s.executes.calls.length, 2);
  const first = s.last();
  first.emit({ type: 'SOCKET.CLOSED' });
  await s.tick(1000);
  s.last().emit({ type: 'SOCKET.OPEN' });
  // The server redelivers A (still running) with a new tid; B is not redelivered yet.
  s.last().frame({ type: FrameType.ORDER, tid: 1, payload: order('A') });
  await settle();
  t.equal(s.executes.calls.length, 2, 'A is not executed a second time');
  s.executes.calls[0].resolve();
  s.executes.calls[1].resolve();
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'ORDER_CONFIRM:1'], 'A acked with its new tid; B (old connection) not acked');
  t.same(s.wire(first), ['FETCH_ORDERS:0']);
  // Then B is redelivered: recognised, acked without executing.
  s.last().frame({ type: FrameType.ORDER, tid: 2, payload: order('B') });
  await settle();
  t.equal(s.executes.calls.length, 2);
  t.same(s.wire(), ['FETCH_ORDERS:0', 'ORDER_CONFIRM:1', 'ORDER_CONFIRM:2']);
  t.same(s.snap().context.orders, []);
});

t.test('STOP flushes and closes the connection', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.actor.send({ type: 'STOP' });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'CLOSE']);
  s.last().emit({ type: 'SOCKET.CLOSED' });
  t.equal(s.child('connection').status, 'done');
  t.same(s.snap().value.route, 'grace');
  t.match(s.emitted.at(-1), { type: 'CONNECTION.STATE', state: 'closed' });

  const off = start();
  await settle();
  off.actor.send({ type: 'STOP' });
  t.match(off.emitted.at(-1), { type: 'CONNECTION.STATE', state: 'closed' }, 'without NGTT there is nothing to wait for');
});

t.test('fault: a provided action of the upload machine throws once — restarted with backoff, nothing lost', async (t) => {
  const s = start({ ngtt: true }, { uploadReport: 1 });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.push(1);
  await settle();
  t.same(s.snap().value.upload, 'faulted');
  t.ok(s.snap().hasTag('faulted'), 'visible as a tag');
  t.match(s.events('FAULT'), [{ source: 'upload', error: 'injected fault' }]);
  t.equal(s.snap().status, 'active', 'the supervisor lives on');
  t.same(s.wire(), ['FETCH_ORDERS:0'], 'the DATA_STREAM never left');

  // Orders still work meanwhile.
  s.last().frame({ type: FrameType.ORDER, tid: 2, payload: order('A') });
  await settle();
  s.executes.calls[0].resolve();
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'ORDER_CONFIRM:2']);

  await s.tick(999);
  t.same(s.snap().value.upload, 'faulted');
  await s.tick(1);
  t.same(s.snap().value.upload, 'running', 'restarted after 1 s');
  t.match(s.events('RECOVERED'), [{ source: 'upload' }]);
  t.same(s.wire().slice(2), ['DATA_STREAM:1'], 'the restarted machine asks the spool again: the batch goes out');
  s.last().frame({ type: FrameType.DATA_STREAM_CONFIRM, tid: 1 });
  await settle();
  t.same(s.trace, ['spool 1 (1)', 'confirmed 1']);
  t.notOk(s.snap().hasTag('faulted'));
});

t.test('fault: a provided action that always throws — restarts back off, everything else keeps working', async (t) => {
  const s = start({ ngtt: true }, { uploadReport: Infinity });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.push(1);
  await settle();
  const delays: number[] = [];
  for (let i = 0; i < 4; i++) {
    delays.push(s.snap().context.restartMs.upload);
    await s.tick(s.snap().context.restartMs.upload);
  }
  t.same(delays, [1000, 2000, 4000, 8000], 'exponential backoff between restarts');
  t.equal(s.events('FAULT').length, 5);
  t.equal(s.snap().status, 'active');
  s.last().frame({ type: FrameType.ORDER, tid: 2, payload: order('A') });
  await settle();
  s.executes.calls[0].resolve();
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'ORDER_CONFIRM:2'], 'orders are still executed and acknowledged');
  t.equal(s.spool.batches.size, 1, 'the batch is still in the spool');
});

t.test('fault: an order actor that fails is rejected with the reason; others are not affected', async (t) => {
  const s = start({ ngtt: true }, { orderReport: ['order-1'] });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.last().frame({ type: FrameType.ORDER, tid: 3, payload: order('A') });
  s.last().frame({ type: FrameType.ORDER, tid: 4, payload: order('B') });
  await settle();
  s.executes.calls[0].resolve();
  s.executes.calls[1].resolve();
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'ORDER_REJECT:3', 'ORDER_CONFIRM:4']);
  t.match(s.events('FAULT'), [{ source: 'order', error: 'injected fault in order-1' }]);
  t.match(s.events('ORDER.DONE'), [
    { key: 'order-1', outcome: 'rejected', reason: 'device fault: injected fault in order-1' },
    { key: 'order-2', outcome: 'acked' },
  ]);
  t.same(s.snap().context.orders, []);
  t.equal(s.snap().children['order-1'], undefined, 'the failed actor is gone');
});

t.test('fault: the connection machine fails — restarted, reconnects', async (t) => {
  const sockets: FakeSocket[] = [];
  let failing = true;
  const s = start({ ngtt: true });
  // Replace the connection with one whose socket throws while `failing`.
  const machine = supervisorMachine.provide({
    actors: {
      connection: connectionMachine.provide({
        actors: { socket: fakeSocketActor(sockets) },
        actions: {
          connected: () => {
            if (failing) throw new Error('injected in connected');
          },
        },
      }),
      fetchConfig: retrying(s.configs.logic),
      pollOrders: s.polls.logic,
    },
  });
  const clock = new SimulatedClock();
  const emitted: SupervisorEmitted[] = [];
  const actor = createActor(machine, { clock, input: { random: () => 0.5, ngtt: true } });
  actor.on('*', (e) => void emitted.push(e));
  actor.start();
  sockets[0].emit({ type: 'SOCKET.OPEN' });
  await settle();
  t.match(actor.getSnapshot().value, { ngtt: { enabled: 'faulted' } });
  t.match(emitted.filter((e) => e.type === 'FAULT'), [{ source: 'connection', error: 'injected in connected' }]);
  t.match(emitted.filter((e) => e.type === 'CONNECTION.STATE').at(-1), { state: 'disconnected' }, 'the runtime is told the link is gone');
  failing = false;
  clock.increment(1000);
  await settle();
  t.equal(sockets.length, 2, 'a fresh connection machine connects again');
  sockets[1].emit({ type: 'SOCKET.OPEN' });
  t.match(actor.getSnapshot().value, { ngtt: { enabled: 'running' }, route: 'ngtt' });
  actor.stop();
});

t.test('BAOB sync: after every (re)connect over NGTT (reserved tid), on the HTTPS fallback, and on demand', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  t.equal(s.baobReads.calls.length, 0, 'no sync without a link');
  s.last().emit({ type: 'SOCKET.OPEN' });
  await settle();
  t.equal(s.baobReads.calls.length, 1, 'connected: sync');
  s.baobReads.calls[0].resolve({ cfg: 2 });
  await settle();
  const request = s.last().commands.find((c) => c.type === 'SEND' && c.frame.type === FrameType.SYNC_BAOB_REQUEST);
  t.match(request, { frame: { tid: BAOB_SYNC_TID, payload: { cfg: 2 } } }, 'SYNC_BAOB_REQUEST {key: version} on the reserved tid');
  s.last().frame({ type: FrameType.SYNC_BAOB_RESPONSE, tid: BAOB_SYNC_TID, payload: { download: [], upload: [] } });
  await settle();
  t.same(s.events('BAOB.SYNCED'), [{ type: 'BAOB.SYNCED', seq: 0, downloaded: [], uploaded: [], deleted: [] }], 'the answer reaches the baob child, not the runtime as FRAME');
  t.equal(s.events('FRAME').length, 0);

  s.actor.send({ type: 'BAOB.SYNC', seq: 1 });
  await settle();
  t.equal(s.baobReads.calls.length, 2, 'on demand');
  s.baobReads.calls[1].resolve({});
  await settle();
  s.last().frame({ type: FrameType.SYNC_BAOB_RESPONSE, tid: BAOB_SYNC_TID, payload: { download: [], upload: [] } });
  await settle();
  t.match(s.events('BAOB.SYNCED').at(-1), { seq: 1 });

  s.last().emit({ type: 'SOCKET.CLOSED', error: 'ECONNRESET' });
  await s.tick(60_000);
  s.last().emit({ type: 'SOCKET.OPEN' });
  await settle();
  t.equal(s.baobReads.calls.length, 3, 'reconnected: sync again');
});

t.test('BAOB sync over HTTPS when NGTT is off', async (t) => {
  const s = start();
  await settle();
  t.equal(s.baobReads.calls.length, 1, 'the HTTPS link syncs at start');
  s.baobReads.calls[0].resolve({ cfg: 1 });
  await settle();
  t.same(s.baobPlans.calls.map((c) => c.input), [{ versions: { cfg: 1 } }]);
  s.baobPlans.calls[0].resolve({ status: 200, body: { should_download: [], should_upload: [], should_delete: [] } });
  await settle();
  t.equal(s.events('BAOB.SYNCED').length, 1);
});
