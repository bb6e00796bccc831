import t from 'tap';
import { SimulatedClock, createActor, sendTo, setup } from 'xstate';
import { FrameType } from '../../src/protocol/frames.js';
import { DEFAULT_BACKOFF, backoffDelay, nominalBackoff } from '../../machines/common.js';
import { type ConnectionInput, type ConnectionReport, PING_TID, connectionMachine } from '../../machines/connection.js';
import { type FakeSocket, fakeSocketActor, sequence } from '../helpers/machines.js';

function start(input: Partial<ConnectionInput> = {}, opts: { autoSent?: boolean } = {}) {
  const sockets: FakeSocket[] = [];
  const reports: ConnectionReport[] = [];
  const clock = new SimulatedClock();
  const machine = connectionMachine.provide({
    actors: { socket: fakeSocketActor(sockets, opts) },
    actions: { report: (_, params) => void reports.push(params) },
  });
  const actor = createActor(machine, { clock, input: { random: () => 0.5, ...input } });
  actor.start();
  const last = () => sockets[sockets.length - 1];
  const sent = (s = last()) => s.commands.map((c) => (c.type === 'SEND' ? `${c.frame.type}:${c.frame.tid}` : c.type));
  const state = () => actor.getSnapshot().value;
  const authenticated = () => actor.getSnapshot().matches({ session: 'authenticated' });
  /** The reports in short: the state entered, or FRAME. */
  const told = () => reports.map((r) => (r.type === 'CONNECTION.STATE' ? r.state : 'FRAME'));
  return { actor, clock, sockets, reports, told, last, sent, state, authenticated, ctx: () => actor.getSnapshot().context };
}

t.test('backoff: 1, 2, 4 … 60 s, then 60 s, and back to 1 s after a success', async (t) => {
  const c = start();
  t.same(c.state(), 'disconnected');
  c.actor.send({ type: 'CONNECT' });
  t.same(c.state(), { session: 'connecting' });
  t.equal(c.last().input.attempt, 1);
  const delays: number[] = [];
  for (let i = 0; i < 9; i++) {
    c.last().emit({ type: 'SOCKET.CLOSED', error: 'ECONNREFUSED' });
    t.equal(c.state(), 'backoff');
    t.ok(c.last().stopped, 'the failed socket is torn down');
    const d = c.ctx().backoffMs;
    delays.push(d);
    const count = c.sockets.length;
    c.clock.increment(d - 1);
    t.equal(c.sockets.length, count, 'no reconnect before the delay is over');
    c.clock.increment(1);
    t.equal(c.sockets.length, count + 1, 'reconnects when the delay is over');
    t.equal(c.last().input.attempt, i + 2);
  }
  t.same(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);

  c.last().emit({ type: 'SOCKET.OPEN' });
  t.equal(c.ctx().failures, 0);
  c.last().emit({ type: 'SOCKET.CLOSED' });
  t.equal(c.ctx().backoffMs, 1000, 'reset to 1 s after a successful connection');
  c.clock.increment(1000);
  t.equal(c.last().input.attempt, 2, 'first retry after the success');
});

t.test('backoff jitter is ±20 % around the nominal delay', async (t) => {
  for (let attempt = 1; attempt <= 10; attempt++) {
    const nominal = nominalBackoff(attempt, DEFAULT_BACKOFF);
    t.equal(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0), Math.round(nominal * 0.8));
    t.equal(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0.999999), Math.round(nominal * 1.2));
    t.equal(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0.5), nominal);
  }
  // The machine draws one number per backoff from the injected source.
  const c = start({ random: sequence(0, 0.999999, 0.25) });
  c.actor.send({ type: 'CONNECT' });
  const seen: number[] = [];
  for (let i = 0; i < 3; i++) {
    c.last().emit({ type: 'SOCKET.CLOSED' });
    seen.push(c.ctx().backoffMs);
    c.clock.increment(c.ctx().backoffMs);
  }
  t.same(seen, [800, 2400, 3600]);
});

t.test('FETCH_ORDERS is the first frame after connecting, when orders are wanted', async (t) => {
  const c = start();
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  t.same(c.state(), { session: { authenticated: { sending: 'active', receiving: 'listening' } } });
  t.same(c.sent(), [`${FrameType.FETCH_ORDERS}:0`]);
  t.same(c.reports, [
    { type: 'CONNECTION.STATE', state: 'connecting', epoch: 0 },
    { type: 'CONNECTION.STATE', state: 'authenticated', epoch: 1 },
  ], 'what was flushed is not reported: only the keepalive needs it');

  const quiet = start({ wantOrders: false });
  quiet.actor.send({ type: 'CONNECT' });
  quiet.last().emit({ type: 'SOCKET.OPEN' });
  t.same(quiet.sent(), [], 'no FETCH_ORDERS when orders are not wanted');
});

t.test('keepalive: PING at 30 s idle, dead at 90 s with the PING unanswered', async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.last().frame({ type: FrameType.ORDER, tid: 1 }); // keeps the receive side alive; not the point here
  c.clock.increment(29_999);
  t.same(c.sent(), []);
  c.clock.increment(1);
  t.same(c.sent(), [`${FrameType.PING}:${PING_TID}`]);
  t.same(c.state(), { session: { authenticated: { sending: 'pingOutstanding', receiving: 'listening' } } });
  c.clock.increment(59_999);
  t.equal(c.ctx().epoch, 1);
  t.ok(c.authenticated(), 'alive until 90 s after the last send');
  c.clock.increment(1);
  t.equal(c.state(), 'backoff');
  t.ok(c.last().stopped);
  t.same(c.told(), ['connecting', 'authenticated', 'FRAME', 'backoff'], 'our own PING is not reported as sent');
  t.match(c.reports[3], { epoch: 1, reason: 'PING not answered', delayMs: 1000 });
});

t.test('keepalive: an answered PING, and sends, restart the idle clock', async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.clock.increment(20_000);
  c.actor.send({ type: 'SEND', frame: { type: FrameType.LOGS, tid: 0, payload: [] } });
  c.clock.increment(29_999);
  t.same(c.sent(), [`${FrameType.LOGS}:0`], 'no PING 30 s after start: something was sent at 20 s');
  c.clock.increment(1);
  t.same(c.sent(), [`${FrameType.LOGS}:0`, `${FrameType.PING}:${PING_TID}`], 'PING at 50 s');
  c.clock.increment(1_000);
  c.last().frame({ type: FrameType.PING, tid: PING_TID });
  t.match(c.state(), { session: { authenticated: { sending: 'active' } } });
  t.equal(c.reports.filter((r) => r.type === 'CONNECTION.FRAMES').length, 0, 'PING echoes are not forwarded');
  c.clock.increment(29_999);
  t.equal(c.sent().length, 2);
  c.clock.increment(1);
  t.equal(c.sent().length, 3, 'next PING 30 s after the echo');
});

t.test("a PING with another tid (the logs' receipt) is the outside's: forwarded, and not taken for the keepalive's echo", async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.clock.increment(30_000);
  t.same(c.sent(), [`${FrameType.PING}:${PING_TID}`]);
  c.last().frame({ type: FrameType.PING, tid: 0x7ffd });
  t.match(c.state(), { session: { authenticated: { sending: 'pingOutstanding' } } }, 'the keepalive still waits for its own echo');
  t.match(c.reports.at(-1), { type: 'CONNECTION.FRAMES', epoch: 1, frames: [{ type: FrameType.PING, tid: 0x7ffd }] });
});

t.test('keepalive: sending while a PING is outstanding pushes the dead deadline back', async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.clock.increment(30_000); // PING
  c.clock.increment(30_000); // t = 60 s
  c.actor.send({ type: 'SEND', frame: { type: FrameType.DATA_STREAM, tid: 1, payload: [] } });
  c.clock.increment(40_000); // t = 100 s
  c.last().frame({ type: FrameType.DATA_STREAM_CONFIRM, tid: 1 });
  c.clock.increment(49_999); // t = 149.999 s
  t.match(c.state(), { session: { authenticated: { sending: 'pingOutstanding' } } });
  c.clock.increment(1); // 90 s after the last send
  t.equal(c.state(), 'backoff');
});

t.test('keepalive: dead at 120 s with nothing received, however much is sent', async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  for (let i = 0; i < 5; i++) {
    c.clock.increment(20_000);
    c.actor.send({ type: 'SEND', frame: { type: FrameType.LOGS, tid: 0, payload: [] } });
  }
  t.equal(c.sent().filter((s) => s.startsWith(`${FrameType.PING}:`)).length, 0, 'never idle, so never a PING');
  c.clock.increment(19_999); // t = 119.999 s
  t.ok(c.authenticated());
  c.clock.increment(1);
  t.equal(c.state(), 'backoff');
  t.match(c.reports.at(-1), { type: 'CONNECTION.STATE', state: 'backoff', reason: 'nothing received' });
});

t.test('timings come from input', async (t) => {
  const c = start({ wantOrders: false, timings: { pingIdleMs: 1000, pingDeadMs: 3000, receiveDeadMs: 10_000 } });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.clock.increment(1000);
  t.same(c.sent(), [`${FrameType.PING}:${PING_TID}`]);
  c.clock.increment(1999);
  t.ok(c.authenticated());
  c.clock.increment(1);
  t.equal(c.state(), 'backoff');
});

t.test('frames are forwarded with the epoch; SEND goes to the socket only while authenticated', async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.actor.send({ type: 'SEND', frame: { type: FrameType.LOGS, tid: 0 } });
  t.same(c.sent(), [], 'dropped while connecting');
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.last().frame({ type: FrameType.ORDER, tid: 7, payload: [] });
  t.same(c.reports[2], { type: 'CONNECTION.FRAMES', epoch: 1, frames: [{ type: FrameType.ORDER, tid: 7, payload: [] }] });
  c.last().emit({ type: 'SOCKET.CLOSED' });
  c.clock.increment(1000);
  c.last().emit({ type: 'SOCKET.OPEN' });
  t.same(c.reports.at(-1), { type: 'CONNECTION.STATE', state: 'authenticated', epoch: 2 });
});

t.test('connect timeout leads to backoff', async (t) => {
  const c = start();
  c.actor.send({ type: 'CONNECT' });
  c.clock.increment(29_999);
  t.same(c.state(), { session: 'connecting' });
  c.clock.increment(1);
  t.equal(c.state(), 'backoff');
  t.ok(c.sockets[0].stopped);
  t.same(c.told(), ['connecting', 'backoff']);
  t.match(c.reports[1], { reason: 'connect timed out', epoch: 0 });
  t.equal(c.sockets[0].input.connectTimeoutMs, 30_000, 'the socket is told the timeout too');
});

t.test('CLOSE: closing drains the socket, then closed (final)', async (t) => {
  const c = start({ wantOrders: false });
  c.actor.send({ type: 'CONNECT' });
  c.last().emit({ type: 'SOCKET.OPEN' });
  c.actor.send({ type: 'CLOSE' });
  t.same(c.state(), { session: 'closing' });
  t.same(c.sent(), ['CLOSE']);
  t.notOk(c.last().stopped, 'the socket may drain');
  c.last().emit({ type: 'SOCKET.CLOSED' });
  t.equal(c.state(), 'closed');
  t.equal(c.actor.getSnapshot().status, 'done');
  t.same(c.told(), ['connecting', 'authenticated', 'closing', 'closed']);

  const slow = start();
  slow.actor.send({ type: 'CONNECT' });
  slow.last().emit({ type: 'SOCKET.OPEN' });
  slow.actor.send({ type: 'CLOSE' });
  slow.clock.increment(4_999);
  t.same(slow.state(), { session: 'closing' });
  slow.clock.increment(1);
  t.equal(slow.state(), 'closed', 'a socket that does not drain is destroyed after closeTimeoutMs');
  t.ok(slow.last().stopped);

  const waiting = start();
  waiting.actor.send({ type: 'CONNECT' });
  waiting.last().emit({ type: 'SOCKET.CLOSED' });
  waiting.actor.send({ type: 'CLOSE' });
  t.equal(waiting.state(), 'closed', 'CLOSE during backoff');
  waiting.clock.increment(120_000);
  t.equal(waiting.sockets.length, 1, 'no reconnect after closing');

  const idle = start();
  idle.actor.send({ type: 'CLOSE' });
  t.equal(idle.state(), 'closed', 'CLOSE before connecting');
});

t.test('a socket actor that fails leads to backoff', async (t) => {
  const clock = new SimulatedClock();
  const reports: ConnectionReport[] = [];
  const actor = createActor(
    connectionMachine.provide({ actions: { report: (_, r) => void reports.push(r) } }),
    { clock, input: { random: () => 0.5 } },
  );
  actor.start();
  actor.send({ type: 'CONNECT' });
  t.equal(actor.getSnapshot().value, 'backoff', 'the placeholder socket throws');
  t.match(reports.at(-1), { state: 'backoff', reason: 'socket failed' });
  actor.stop();
});

t.test('the default report goes to the parent (no private API)', async (t) => {
  const seen: string[] = [];
  const sockets: FakeSocket[] = [];
  const parent = createActor(
    setup({ actors: { connection: connectionMachine.provide({ actors: { socket: fakeSocketActor(sockets) } }) } }).createMachine({
      invoke: { id: 'c', src: 'connection', input: { random: () => 0.5 } },
      entry: sendTo('c', { type: 'CONNECT' }),
      on: { '*': { actions: ({ event }) => void seen.push((event as { state?: string }).state ?? event.type) } },
    }),
  );
  parent.start();
  sockets[0].emit({ type: 'SOCKET.OPEN' });
  sockets[0].frame({ type: FrameType.ORDER, tid: 1 });
  t.same(seen, ['connecting', 'authenticated', 'CONNECTION.FRAMES']);
  parent.stop();
});
