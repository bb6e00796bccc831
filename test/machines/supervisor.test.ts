import t from 'tap';
import { type AnyActorRef, SimulatedClock, createActor, fromPromise } from 'xstate';
import { FrameType, frameTypeName } from '../../src/protocol/frames.js';
import type { DeviceConfig, LogRecord, PathpointDeclaration, PathpointSeries } from '../../src/protocol/messages.js';
import type { HttpResult } from '../../machines/common.js';
import {
  type ExecuteInput,
  type OrderOutcome,
  type SupervisorEmitted,
  type SupervisorInput,
  connectionMachine,
  logsMachine,
  orderMachine,
  supervisorMachine,
  uploadMachine,
} from '../../machines/index.js';
import { FakeSpool } from '../helpers/fake-spool.js';
import { type FakeSocket, fakeSocketActor, manualPromise, settle } from '../helpers/machines.js';

const CONFIG: DeviceConfig = { device_id: 'dev-1', verbose_name: 'dev-1', facets: [], culture_context: { language: 'en', timezone: 'UTC', units: 'metric' }, slave_devices: [] };

const order = (id: string) => [{ id, orders: [{ type: 'read', path: 'W1' }], disposition: 0 }];

function start(input: Partial<SupervisorInput> = {}) {
  const sockets: FakeSocket[] = [];
  const trace: string[] = [];
  const emitted: SupervisorEmitted[] = [];
  const fake = new FakeSpool();
  const spool = fake.batches;
  const seen = new Map<string, OrderOutcome>();
  const polls = manualPromise<void, unknown>();
  const posts = manualPromise<{ id: number }, HttpResult>();
  const executes = manualPromise<ExecuteInput, void>();
  const declares = manualPromise<{ declarations: PathpointDeclaration[] }, HttpResult>();
  const logPosts = manualPromise<{ records: LogRecord[] }, HttpResult>();
  const clock = new SimulatedClock();
  const machine = supervisorMachine.provide({
    actors: {
      connection: connectionMachine.provide({ actors: { socket: fakeSocketActor(sockets) } }),
      upload: uploadMachine.provide({
        actors: { cutBatch: fake.cutBatch, loadBatch: fake.loadBatch, postBatch: posts.logic },
        actions: {
          batchConfirmed: (_, p) => void trace.push(`confirmed ${p.id}`),
          setAside: (_, p) => void trace.push(`aside ${p.id}`),
        },
      }),
      logs: logsMachine.provide({ actors: { postLogs: logPosts.logic } }),
      order: orderMachine.provide({
        actors: {
          checkExecuted: fromPromise<OrderOutcome | null, { id: string }>(async ({ input }) => seen.get(input.id) ?? null),
          execute: executes.logic,
          recordOutcome: fromPromise<void, { id: string; outcome: OrderOutcome }>(async ({ input }) => void seen.set(input.id, input.outcome)),
        },
      }),
      pollOrders: polls.logic,
      fetchConfig: fromPromise<DeviceConfig, void>(async () => {
        trace.push('GET /v1/device');
        return CONFIG;
      }),
      declarePathpoints: declares.logic,
    },
  });
  const actor = createActor(machine, { clock, input: { random: () => 0.5, graceMs: 10_000, pollIntervalMs: 5_000, ...input } });
  actor.on('*', (e) => void emitted.push(e));
  actor.start();
  const snap = () => actor.getSnapshot();
  const child = (id: 'upload' | 'logs' | 'connection') => (snap().children[id] as AnyActorRef).getSnapshot();
  const last = () => sockets[sockets.length - 1];
  /** Frames written on a socket, as NAME:tid. */
  const wire = (s = last()) => s.commands.map((c) => (c.type === 'SEND' ? `${frameTypeName(c.frame.type)}:${c.frame.tid}` : c.type));
  const push = (ts: number) => actor.send(fake.push([{ path: 'W1', values: [[ts, ts]] }]));
  return { actor, clock, sockets, trace, emitted, spool, polls, posts, executes, declares, logPosts, snap, child, last, wire, push };
}

t.test('NGTT disabled (the default): HTTPS polling and posting, no socket', async (t) => {
  const s = start();
  await settle();
  t.same(s.snap().value, { ngtt: 'disabled', route: { https: 'polling' }, config: 'ready', declarations: 'idle' });
  t.equal(s.sockets.length, 0);
  t.equal(s.child('upload').context.link, 'https');
  t.equal(s.child('logs').context.link, 'https');
  t.same(s.emitted, [{ type: 'CONFIG', config: CONFIG }]);

  t.equal(s.polls.calls.length, 1, 'polls at once');
  s.polls.calls[0].resolve(order('A'));
  await settle();
  t.same(s.executes.calls.map((c) => c.input.id), ['A']);
  s.executes.calls[0].resolve();
  await settle();
  t.match(s.emitted.at(-1), { type: 'ORDER.DONE', via: 'https', id: 'A', outcome: 'acked' });
  t.same(s.snap().context.orders, [], 'the finished order actor is gone');
  t.equal(s.snap().children['order-1'], undefined);

  s.clock.increment(4_999);
  t.equal(s.polls.calls.length, 1);
  s.clock.increment(1);
  t.equal(s.polls.calls.length, 2, 'polls every pollIntervalMs');
  s.polls.calls[1].resolve([]);
  await settle();
  t.equal(s.executes.calls.length, 1, 'an empty poll spawns nothing');

  s.push(1);
  s.actor.send({ type: 'FLUSH' });
  await settle();
  t.same(s.posts.calls.map((c) => c.input.id), [1], 'data goes over HTTPS');
  s.actor.send({ type: 'LOG', records: [{ service: 'x', when: 1, message: 'hi', level: 20 }] });
  s.actor.send({ type: 'FLUSH' });
  await settle();
  t.equal(s.logPosts.calls.length, 1, 'logs go over HTTPS');
});

t.test('NGTT up: orders, data and logs over NGTT; FETCH_ORDERS first', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  t.same(s.snap().value, { ngtt: 'enabled', route: 'grace', config: 'ready', declarations: 'idle' });
  t.equal(s.polls.calls.length, 0, 'no polling while waiting for NGTT');
  t.equal(s.child('upload').context.link, 'none');
  s.last().emit({ type: 'SOCKET.OPEN' });
  t.same(s.snap().value.route, 'ngtt');
  t.equal(s.child('upload').context.link, 'ngtt');
  t.same(s.wire(), ['FETCH_ORDERS:0']);

  s.push(1);
  s.actor.send({ type: 'LOG', records: [{ service: 'x', when: 1, message: 'hi', level: 20 }] });
  s.actor.send({ type: 'FLUSH' });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'LOGS:0', 'DATA_STREAM:1']);
  s.last().frame({ type: FrameType.DATA_STREAM_CONFIRM, tid: 1 });
  t.same(s.trace, ['GET /v1/device', 'confirmed 1']);

  s.last().frame({ type: FrameType.ORDER, tid: 4, payload: order('A') });
  await settle();
  t.equal(s.executes.calls.length, 1);
  s.executes.calls[0].resolve();
  await settle();
  t.same(s.wire().slice(3), ['ORDER_CONFIRM:4']);

  s.last().frame({ type: FrameType.ORDER, tid: 5, payload: order('B') });
  await settle();
  s.executes.calls[1].reject(new Error('no such pathpoint'));
  await settle();
  const reject = s.last().commands.at(-1);
  t.same(reject, { type: 'SEND', frame: { type: FrameType.ORDER_REJECT, tid: 5, payload: { reason: 'no such pathpoint' } } });

  s.last().frame({ type: FrameType.SYNC_BAOB_RESPONSE, tid: 9, payload: { download: [], upload: [] } });
  t.match(s.emitted.at(-1), { type: 'FRAME', frame: { type: FrameType.SYNC_BAOB_RESPONSE, tid: 9 } }, 'other frames go to the runtime');
  t.equal(s.polls.calls.length, 0, 'never polled');
});

t.test('device configuration and pathpoint declarations always go over HTTPS', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  const decl = [{ path: 'W1', storage_level: 1 }];
  s.actor.send({ type: 'DECLARE', declarations: decl });
  await settle();
  t.same(s.declares.calls.map((c) => c.input.declarations), [decl]);
  s.declares.calls[0].reject(new Error('ECONNRESET'));
  await settle();
  s.clock.increment(1000);
  await settle();
  t.equal(s.declares.calls.length, 2, 'retried after the backoff');
  s.declares.calls[1].resolve({ status: 204 });
  await settle();
  t.match(s.emitted.at(-1), { type: 'DECLARED', declarations: decl });
  s.actor.send({ type: 'REFRESH_CONFIG' });
  await settle();
  t.same(s.trace, ['GET /v1/device', 'GET /v1/device']);
  t.same(s.wire(), ['FETCH_ORDERS:0'], 'nothing of it on the NGTT connection');
});

t.test('NGTT down past the grace period → HTTPS, then back to NGTT without loss or duplicates', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.push(1);
  s.actor.send({ type: 'FLUSH' });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'DATA_STREAM:1']);

  s.last().emit({ type: 'SOCKET.CLOSED', error: 'ETIMEDOUT' }); // t = 0; DATA_STREAM 1 unanswered
  t.same(s.snap().value.route, 'grace');
  t.equal(s.child('upload').context.link, 'none');
  t.same(s.child('upload').context.queue, [1], 'the unanswered batch is queued again');
  s.push(2);
  s.actor.send({ type: 'FLUSH' });
  s.clock.increment(1000); // reconnect attempt 2: leave it hanging in connecting
  s.clock.increment(8_999);
  t.same(s.snap().value.route, 'grace');
  t.equal(s.posts.calls.length + s.polls.calls.length, 0, 'nothing over HTTPS within the grace period');
  s.clock.increment(1); // t = 10 s
  t.same(s.snap().value.route, { https: 'polling' });
  await settle();
  t.equal(s.polls.calls.length, 1);
  t.same(s.posts.calls.map((c) => c.input.id), [1], 'queued data goes over HTTPS, one POST at a time');

  s.last().emit({ type: 'SOCKET.OPEN' }); // NGTT is back while the poll and the POST are out
  t.same(s.snap().value.route, { https: 'polling' }, 'the poll in flight finishes first');
  s.polls.calls[0].resolve([]);
  await settle();
  t.same(s.snap().value.route, 'ngtt');
  t.same(s.wire(), ['FETCH_ORDERS:0'], 'the POST in flight is not duplicated on NGTT');
  s.posts.calls[0].resolve({ status: 200 });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'DATA_STREAM:2'], 'only batch 2, over NGTT (the tid cursor runs on)');
  t.same(s.last().commands.at(-1), { type: 'SEND', frame: { type: FrameType.DATA_STREAM, tid: 2, payload: [{ path: 'W1', values: [[2, 2]] }], encoded: undefined } });
  s.last().frame({ type: FrameType.DATA_STREAM_CONFIRM, tid: 2 });
  t.same(s.trace.slice(1), ['confirmed 1', 'confirmed 2'], 'each batch confirmed once');
  t.equal(s.posts.calls.length, 1);
});

t.test('NGTT back within the grace period: no HTTPS at all', async (t) => {
  const s = start({ ngtt: true });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.last().emit({ type: 'SOCKET.CLOSED' });
  s.clock.increment(1000);
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.clock.increment(60_000);
  await settle();
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
  s.clock.increment(1000);
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
  const s = start({ ngtt: true, upload: { options: { maxBatchAgeMs: 60_000 } } });
  await settle();
  s.last().emit({ type: 'SOCKET.OPEN' });
  s.push(1);
  s.actor.send({ type: 'STOP' });
  await settle();
  t.same(s.wire(), ['FETCH_ORDERS:0', 'CLOSE'], 'CLOSE goes before the batch is loaded');
  t.ok(s.spool.has(1), 'the open batch was spooled');
  s.last().emit({ type: 'SOCKET.CLOSED' });
  t.equal(s.child('connection').status, 'done');
  t.same(s.snap().value.route, 'grace');
});
