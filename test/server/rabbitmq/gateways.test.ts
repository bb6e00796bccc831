/**
 * A fleet of two gateway processes (`ngtt server --store rabbitmq`, same PKI, same prefix) and
 * one RabbitMQ; a sink (RabbitStore with `sink: true`) runs in the test process.
 */
import t from 'tap';
import { FrameType } from '../../../src/protocol/index.js';
import { openRabbitStore, topology, type RabbitStore } from '../../../src/server/rabbitmq/index.js';
import { createMemoryStore } from '../../../src/server/store/index.js';
import { adminCall, startGatewayProcess, writeServerPem, type GatewayProcess } from '../../helpers/gateway-process.js';
import { BROKER_URL, brokerReachable, cleanup, order, SKIP_REASON, uniquePrefix, waitFor } from '../../helpers/rabbitmq.js';
import { RawDevice, type ReceivedOrder } from '../../helpers/raw-device.js';
import { makePki } from '../../helpers/server-fixture.js';

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  const pki = await makePki();
  const pem = await writeServerPem(pki);
  const prefix = uniquePrefix();
  const devices = new Set<string>();
  const gateways: GatewayProcess[] = [];
  let sink: RabbitStore | null = null;
  t.teardown(async () => {
    for (const g of gateways) await g.stop();
    await sink?.close();
    await cleanup(topology({ prefix }), devices);
    await pem.remove();
  });

  const startGateway = async (name: string): Promise<GatewayProcess> => {
    const g = await startGatewayProcess(`gateway ${name}`, ['--store', 'rabbitmq', '--amqp-url', BROKER_URL, '--amqp-prefix', prefix, '--memory', ...pem.args]);
    gateways.push(g);
    return g;
  };

  const admin = (g: GatewayProcess, path: string, body?: unknown) => adminCall(g, path, body === undefined ? 'GET' : 'POST', body);
  const enqueueVia = async (g: GatewayProcess, deviceId: string, from: number, n: number) => {
    devices.add(deviceId);
    const ids: string[] = [];
    for (let i = from; i < from + n; i++) ids.push((await admin(g, `/devices/${deviceId}/orders`, order(i))).id as string);
    return ids;
  };
  const orderState = async (g: GatewayProcess, id: string) => ((await admin(g, `/orders/${id}`)) as { state?: string }).state;
  const connect = async (g: GatewayProcess, deviceId: string) => {
    const d = await RawDevice.connect(g.ngttPort, { ca: pki.ca.cert, ...(await pki.device(deviceId)) });
    t.teardown(() => d.destroy());
    return d;
  };

  const [a, b] = await Promise.all([startGateway('A'), startGateway('B')]);
  sink = await openRabbitStore({ url: BROKER_URL, prefix, local: createMemoryStore(), sink: true, connectionName: `${prefix}-sink` });

  t.test('a device moves from gateway A to B: every order confirmed exactly once, never on two live connections', async (t) => {
    const dev = 'dev-move';
    const ids = await enqueueVia(a, dev, 1, 10);

    const onA = await connect(a, dev);
    onA.send(0, FrameType.FETCH_ORDERS);
    const gotA = await onA.takeOrders(4);
    t.same(gotA.map((o) => o.id), ids.slice(0, 4), 'A pushes the first window');
    for (const o of gotA.slice(0, 3)) onA.send(o.tid, FrameType.ORDER_CONFIRM);
    for (const o of gotA.slice(0, 3)) await waitFor(async () => (await orderState(a, o.id)) === 'confirmed', `A to settle ${o.id}`);
    // The window refills: #5–#7 reach the device on A, which does not settle them.
    const moreA = await onA.takeOrders(3);
    t.same(moreA.map((o) => o.id), ids.slice(4, 7));

    // The device reaches B while its connection to A is still open (A has not noticed a drop,
    // or the device really connected twice). A is told to let go and closes that connection
    // before B gets any order (single active consumer: never two live connections at once).
    const onB = await connect(b, dev);
    onB.send(0, FrameType.FETCH_ORDERS);
    const gotB: ReceivedOrder[] = [];
    const first = await onB.takeOrder(10_000);
    t.ok(onA.isClosed, "A had closed the stale connection before B pushed the device's orders");
    gotB.push(first);
    onB.send(first.tid, FrameType.ORDER_CONFIRM);
    while (gotB.length < 7) {
      const o = await onB.takeOrder(10_000);
      gotB.push(o);
      onB.send(o.tid, FrameType.ORDER_CONFIRM);
    }
    t.same(gotB.map((o) => o.id), ids.slice(3), 'B receives exactly the rest, in order');

    // Enqueued through A's admin API while the device is on B.
    const late = await enqueueVia(a, dev, 11, 2);
    for (let i = 0; i < 2; i++) {
      const o = await onB.takeOrder(10_000);
      gotB.push(o);
      onB.send(o.tid, FrameType.ORDER_CONFIRM);
    }
    t.same(gotB.slice(7).map((o) => o.id), late, "A's admin API reaches the device on B");
    await onB.ping();
    t.equal(onB.pending(FrameType.ORDER).length, 0, 'nothing more');

    const confirmed = [...gotA.slice(0, 3), ...gotB].map((o) => o.id);
    t.equal(new Set(confirmed).size, 12, 'each of the 12 orders confirmed exactly once');
    t.same(confirmed, [...ids, ...late]);
    // History rebuilt from the audit trail, in the sink and on each gateway.
    await waitFor(async () => (await sink!.listOrders(dev, { state: 'confirmed' })).length === 12, 'the sink to record 12 confirmed', 10_000);
    await waitFor(async () => (await orderState(a, late[1])) === 'confirmed', "A's history to show B's settles", 10_000);
    t.equal(((await admin(b, `/devices/${dev}/orders?state=confirmed`)) as { orders: unknown[] }).orders.length, 12, 'B lists every settle');
  });

  t.test('a gateway killed with SIGKILL loses nothing', async (t) => {
    const c = await startGateway('C');
    const dev = 'dev-kill';
    const ids = await enqueueVia(b, dev, 1, 6);
    const onC = await connect(c, dev);
    onC.send(0, FrameType.FETCH_ORDERS);
    const gotC = await onC.takeOrders(4);
    t.same(gotC.map((o) => o.id), ids.slice(0, 4));
    onC.send(gotC[0].tid, FrameType.ORDER_CONFIRM);
    for (let tid = 1; tid <= 20; tid++) onC.send(tid, FrameType.DATA_STREAM, [{ path: 'W1', values: [[tid, tid * 10]] }]);
    for (let tid = 1; tid <= 20; tid++) await onC.takeType(FrameType.DATA_STREAM_CONFIRM, tid);
    await waitFor(async () => (await orderState(c, gotC[0].id)) === 'confirmed', 'C to settle the first order');

    await c.kill();
    await onC.closed;

    const onB = await connect(b, dev);
    onB.send(0, FrameType.FETCH_ORDERS);
    const gotB = [];
    for (let i = 0; i < 5; i++) {
      const o = await onB.takeOrder(10_000);
      gotB.push(o);
      onB.send(o.tid, FrameType.ORDER_CONFIRM);
    }
    t.same(gotB.map((o) => o.id), ids.slice(1), 'the 3 in flight on C, then the 2 never sent, via B');
    await onB.ping();
    t.equal(onB.pending(FrameType.ORDER).length, 0, 'the confirmed one is not delivered again');
    await waitFor(async () => (await sink!.readData(dev)).length === 20, 'the sink to hold the 20 confirmed batches', 10_000);
    t.same((await sink!.readData(dev)).map((s) => s.values[0][0]).sort((x, y) => Number(x) - Number(y)), Array.from({ length: 20 }, (_, i) => i + 1));
  });
}
