import t from 'tap';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();

t.test('a second connection from the same device replaces the first', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await server.enqueueOrder('dev-r', readSection(`R${i}`)));

  const first = await server.connect('dev-r');
  first.send(0, FrameType.FETCH_ORDERS);
  const held = await first.takeOrders(3);
  first.send(held[0].tid, FrameType.ORDER_CONFIRM);
  await first.ping();

  const second = await server.connect('dev-r');
  t.teardown(() => second.destroy());
  await within(first.closed, 'the old connection to be closed');
  second.send(0, FrameType.FETCH_ORDERS);
  const redelivered = await second.takeOrders(2);
  t.same(redelivered.map((o) => o.id), ids.slice(1), 'the unsettled orders moved to the new connection');
  t.equal(first.received.filter((f) => f.type === FrameType.ORDER).length, 3, 'the old connection got nothing more');
  const connected = server.connectedDevices();
  t.equal(connected.length, 1);
  t.equal(connected[0].deviceId, 'dev-r');
  t.equal(connected[0].counters.connections, 2);

  // A new order goes to the live connection only.
  const fresh = await server.enqueueOrder('dev-r', readSection('R3'));
  t.equal((await second.takeOrder()).id, fresh);
});

t.test('a silent device is disconnected after the idle timeout; a talking one is not', async (t) => {
  const server = await startTestServer(pki, { idleTimeoutMs: 200 });
  t.teardown(() => server.close());
  const started = Date.now();
  const silent = await server.connect('dev-silent');
  const talker = await server.connect('dev-talker');
  t.teardown(() => talker.destroy());
  const keepTalking = setInterval(() => talker.send(1, FrameType.PING), 50);
  t.teardown(() => clearInterval(keepTalking));
  await within(silent.closed, 'the silent connection to be closed', 3000);
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 200, `closed after ${elapsed} ms, not before the timeout`);
  // A second silent device, connected after the talker, being closed proves the talker's own
  // idle timeout has passed too, without guessing a wall-clock margin.
  const later = await server.connect('dev-silent-2');
  await within(later.closed, 'the second silent connection to be closed', 3000);
  t.equal(talker.isClosed, false, 'a device that sends stays connected');
  t.ok(server.logs.some((l) => /idle timeout/.test(String(l.msg)) && l.deviceId === 'dev-silent'));
});

t.test('bad input closes only the offending connection; nothing stored is lost', async (t) => {
  const server = await startTestServer(pki, { maxFrameLength: 1024 });
  t.teardown(() => server.close());
  const good = await server.connect('dev-good');
  t.teardown(() => good.destroy());
  good.send(0, FrameType.FETCH_ORDERS);

  const cases: [string, (d: Awaited<ReturnType<typeof server.connect>>, tid: number) => void][] = [
    ['oversized frame', (d) => d.sendRaw(encodeFrame(1, FrameType.DATA_STREAM, Buffer.alloc(2048)))],
    ['garbage bytes', (d) => d.sendRaw(Buffer.alloc(64, 0xff))],
    ['ORDER_CONFIRM for a tid it does not hold', (d, tid) => d.send(tid + 1, FrameType.ORDER_CONFIRM)],
    ['undecodable ORDER_CONFIRM payload', (d, tid) => d.sendRaw(encodeFrame(tid, FrameType.ORDER_CONFIRM, Buffer.from([0xff])))],
    ['undecodable ORDER_REJECT payload', (d, tid) => d.sendRaw(encodeFrame(tid, FrameType.ORDER_REJECT, Buffer.from([0x0e, 0, 0])))],
  ];
  for (const [name, misbehave] of cases) {
    const orderId = await server.enqueueOrder('dev-bad', readSection(name));
    const bad = await server.connect('dev-bad');
    bad.send(0, FrameType.FETCH_ORDERS);
    const order = await bad.takeOrder();
    t.equal(order.id, orderId, `${name}: got its order`);
    misbehave(bad, order.tid);
    await within(bad.closed, `${name}: connection closed`);
    await until(async () => (await server.store.getOrder(orderId))?.state === 'queued', `${name}: order requeued`);

    // The well-behaved device is served throughout.
    const goodOrder = await server.enqueueOrder('dev-good', readSection(`after ${name}`));
    const got = await good.takeOrder();
    t.equal(got.id, goodOrder, `${name}: the other device still gets orders`);
    good.send(got.tid, FrameType.ORDER_CONFIRM);
    good.send(7, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 1]] }]);
    await good.takeType(FrameType.DATA_STREAM_CONFIRM, 7);

    // Drain the order so the next case starts with an empty queue.
    const fix = await server.connect('dev-bad');
    fix.send(0, FrameType.FETCH_ORDERS);
    const again = await fix.takeOrder();
    t.equal(again.id, orderId, `${name}: redelivered, not lost`);
    fix.send(again.tid, FrameType.ORDER_CONFIRM);
    await fix.ping();
    await fix.destroy();
  }
  t.equal(server.counters('dev-bad').protocolErrors, cases.length);
  t.equal(good.isClosed, false);
});
