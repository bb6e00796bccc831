/**
 * A fleet with no state on any gateway (issue #16), all real processes: gateways A and B and
 * sinks S1, S2 and S3 (`ngtt server --store rabbitmq --pg-url … [--sink]`), one RabbitMQ, one
 * PostgreSQL (a fresh database). Queues: a fresh prefix, deleted at the end (also on failure);
 * three device queues in all, so the quorum queues stay far within the broker's file handles.
 */
import amqp from 'amqplib';
import t from 'tap';
import { FrameType } from '../../../src/protocol/index.js';
import { topology } from '../../../src/server/rabbitmq/index.js';
import { adminCall, startGatewayProcess, writeServerPem, type GatewayProcess } from '../../helpers/gateway-process.js';
import { PG_SKIP_REASON, postgresReachable, query, testDatabase } from '../../helpers/postgres.js';
import { BROKER_URL, brokerReachable, cleanup, order, SKIP_REASON, uniquePrefix, waitFor } from '../../helpers/rabbitmq.js';
import { RawDevice } from '../../helpers/raw-device.js';
import { makePki } from '../../helpers/server-fixture.js';
import { SmokHttpClient } from '../../helpers/smok-http.js';

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else if (!(await postgresReachable())) {
  t.plan(0, PG_SKIP_REASON);
} else {
  const pki = await makePki();
  const pem = await writeServerPem(pki);
  const prefix = uniquePrefix();
  const topo = topology({ prefix });
  const pgUrl = await testDatabase(t);
  const devices = new Set<string>();
  const processes: GatewayProcess[] = [];
  t.teardown(async () => {
    for (const p of processes) await p.kill();
    await cleanup(topo, devices);
    await pem.remove();
  });

  const start = async (name: string, sink = false) => {
    const args = ['--store', 'rabbitmq', '--amqp-url', BROKER_URL, '--amqp-prefix', prefix, '--pg-url', pgUrl, ...(sink ? ['--sink'] : [])];
    const p = await startGatewayProcess(name, [...args, ...pem.args]);
    processes.push(p);
    return p;
  };
  const connect = async (g: GatewayProcess, deviceId: string) => {
    devices.add(deviceId);
    const d = await RawDevice.connect(g.ngttPort, { ca: pki.ca.cert, ...(await pki.device(deviceId)) });
    t.teardown(() => d.destroy());
    return d;
  };
  const https = async (g: GatewayProcess, deviceId: string) => {
    const client = new SmokHttpClient({ port: g.httpsPort, ca: pki.ca.cert, ...(await pki.device(deviceId)) });
    t.teardown(() => client.close());
    return client;
  };
  const count = async (sql: string) => Number((await query<{ n: string }>(pgUrl, sql))[0].n);

  // Gateways start together: the migrations run once, under the advisory lock.
  const [a, b] = await Promise.all([start('A'), start('B')]);

  t.test('configuration, declarations and BAOBs set through A are served through B', async (t) => {
    const dev = 'dev-config';
    await adminCall(a, `/devices/${dev}/config`, 'PUT', { verbose_name: 'Boiler room', culture_context: { language: 'pl' } });
    await adminCall(a, `/devices/${dev}/pathpoints`, 'PUT', [{ path: 'W1', storage_level: 2 }]);
    const put = await fetch(`http://127.0.0.1:${a.adminPort}/v1/admin/devices/${dev}/baobs/settings.bin`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array([1, 2, 3]),
    });
    t.equal(put.status, 200);

    const viaB = await https(b, dev);
    const config = (await viaB.get('/v1/device')) as { verbose_name: string; culture_context: { language: string } };
    t.equal(config.verbose_name, 'Boiler room', "B serves the config set through A (GET /v1/device)");
    t.equal(config.culture_context.language, 'pl');
    t.match(await adminCall(b, `/devices/${dev}`), { pathpoints: [{ path: 'W1', storage_level: 2 }] });
    const [bytes, headers] = (await viaB.get('/v1/device/baobs/settings.bin', { directResponse: true })) as [Buffer, Record<string, string>];
    t.same([...bytes], [1, 2, 3], 'B serves the BAOB published through A, without any sink running');
    t.ok(JSON.stringify(headers).includes('1'), 'version 1');
    // And the other way round: the last change wins wherever it was made.
    await adminCall(b, `/devices/${dev}/config`, 'PUT', { verbose_name: 'Boiler room 2' });
    t.equal((await adminCall<{ config: { verbose_name: string } }>(a, `/devices/${dev}`)).config.verbose_name, 'Boiler room 2');
  });

  t.test('two sinks drain competing; one SIGKILLed mid-drain: nothing lost, nothing stored twice', async (t) => {
    const dev = 'dev-data';
    const batches = 1000;
    const logBatches = 200;
    const onA = await connect(a, dev);
    // Enqueued through A, confirmed by the device on A: the history is in PostgreSQL at once.
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) ids.push((await adminCall<{ id: string }>(a, `/devices/${dev}/orders`, 'POST', order(i))).id);
    onA.send(0, FrameType.FETCH_ORDERS);
    for (const o of await onA.takeOrders(3)) onA.send(o.tid, FrameType.ORDER_CONFIRM);

    // No sink runs yet: everything waits on the broker.
    for (let i = 1; i <= batches; i++) {
      onA.send(i, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1_700_000_000_000 + i * 1000, i], [1_700_000_000_500 + i * 1000, i + 0.5]] }]);
      if (i <= logBatches) onA.send(0, FrameType.LOGS, [{ service: 'test', when: 1_700_000_000_000_000 + i, message: `log ${i}`, level: 20 }]);
    }
    for (let i = 1; i <= batches; i++) await onA.takeType(FrameType.DATA_STREAM_CONFIRM, i);
    t.equal(await count('SELECT count(*) AS n FROM data_batches'), 0, 'nothing stored before a sink runs');

    const [s1, s2] = await Promise.all([start('S1', true), start('S2', true)]);
    await waitFor(async () => (await count('SELECT count(*) AS n FROM data_batches')) >= batches / 5, 'the sinks to start draining', 30_000, 5);
    const before = await count('SELECT count(*) AS n FROM data_batches');
    await s1.kill();
    t.ok(before < batches, `S1 killed mid-drain (${before} of ${batches} batches stored)`);

    // The device, whose confirms it thinks were lost, sends the first 50 batches again, through B.
    onA.destroy();
    const onB = await connect(b, dev);
    for (let i = 1; i <= 50; i++) onB.send(i, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1_700_000_000_000 + i * 1000, i], [1_700_000_000_500 + i * 1000, i + 0.5]] }]);
    for (let i = 1; i <= 50; i++) await onB.takeType(FrameType.DATA_STREAM_CONFIRM, i);

    await waitFor(
      async () => (await count('SELECT count(*) AS n FROM data_batches')) === batches && (await count('SELECT count(*) AS n FROM log_batches')) === logBatches,
      'S2 to store everything',
      60_000,
      50,
    );
    // A clean stop of S2 finishes (commit, ack) or hands back what it holds; then the queues must be empty.
    await s2.stop();
    const conn = await amqp.connect(BROKER_URL);
    try {
      const ch = await conn.createChannel();
      t.equal((await ch.checkQueue(topo.pathpointsQueue)).messageCount, 0, 'no data left on the broker');
      t.equal((await ch.checkQueue(topo.logsQueue)).messageCount, 0, 'no logs left on the broker');
    } finally {
      await conn.close();
    }
    t.equal(await count('SELECT count(*) AS n FROM data_batches'), batches, 'each batch stored once');
    t.equal(await count('SELECT count(*) AS n FROM data'), batches * 2, 'each value stored once');
    t.equal(await count(`SELECT count(DISTINCT value) AS n FROM data WHERE value = floor(value)`), batches, 'every batch is there');
    t.equal(await count('SELECT count(*) AS n FROM logs'), logBatches, 'each log record stored once');
    t.same(await query(pgUrl, `SELECT state, count(*)::int AS n FROM orders WHERE device_id = $1 GROUP BY state`, [dev]), [{ state: 'confirmed', n: 3 }]);
    const history = await adminCall<{ orders: { id: string; state: string }[] }>(b, `/devices/${dev}/orders`);
    t.same(history.orders.map((o) => [o.id, o.state]), ids.map((id) => [id, 'confirmed']), "B lists A's history from PostgreSQL");
  });

  t.test('a device moves from A to B mid-stream: every order and every value exactly once', async (t) => {
    const dev = 'dev-move';
    const sink = await start('S3', true);
    t.teardown(() => sink.kill());
    const batch = (i: number) => [{ path: 'M', values: [[1_700_000_000_000 + i * 1000, i], [1_700_000_000_500 + i * 1000, i + 0.5]] as [number, number][] }];
    const ids: string[] = [];
    for (let i = 1; i <= 20; i++) ids.push((await adminCall<{ id: string }>(a, `/devices/${dev}/orders`, 'POST', order(i))).id);

    // On A (order window 4): 5 orders confirmed, 4 more in flight; 100 batches sent, the device
    // waits for 60 confirms.
    const onA = await connect(a, dev);
    onA.send(0, FrameType.FETCH_ORDERS);
    const deliveredOnA = await onA.takeOrders(4);
    for (const o of deliveredOnA) onA.send(o.tid, FrameType.ORDER_CONFIRM);
    deliveredOnA.push(...(await onA.takeOrders(4)));
    onA.send(deliveredOnA[4].tid, FrameType.ORDER_CONFIRM);
    deliveredOnA.push(await onA.takeOrder());
    for (let i = 1; i <= 100; i++) onA.send(i, FrameType.DATA_STREAM, batch(i));
    for (let i = 1; i <= 60; i++) await onA.takeType(FrameType.DATA_STREAM_CONFIRM, i);
    await waitFor(async () => (await count(`SELECT count(*) AS n FROM orders WHERE device_id = 'dev-move' AND state = 'confirmed'`)) === 5, 'the 5 confirms on A to be recorded');
    const confirmedOnA = new Set(deliveredOnA.slice(0, 5).map((o) => o.id));
    // Cut mid-stream: 4 orders in flight, batches 61..100 sent and not (all) confirmed to the device.
    onA.destroy();

    // On B the device sends again what it has no confirm for (61..100), then new data (101..150).
    const onB = await connect(b, dev);
    for (let i = 61; i <= 150; i++) onB.send(i, FrameType.DATA_STREAM, batch(i));
    for (let i = 61; i <= 150; i++) await onB.takeType(FrameType.DATA_STREAM_CONFIRM, i);
    onB.send(0, FrameType.FETCH_ORDERS);
    const deliveredOnB = [];
    for (let i = 0; i < 15; i++) {
      const o = await onB.takeOrder();
      deliveredOnB.push(o);
      onB.send(o.tid, FrameType.ORDER_CONFIRM);
    }
    const onBIds = deliveredOnB.map((o) => o.id);
    t.equal(new Set(onBIds).size, 15, 'B delivers 15 distinct orders');
    t.same(onBIds.filter((id) => confirmedOnA.has(id)), [], 'none of the orders confirmed on A comes again from B');
    t.same([...confirmedOnA, ...onBIds].sort(), [...ids].sort(), 'together A and B delivered all 20 orders');
    t.same(
      deliveredOnA.slice(5).map((o) => o.id).filter((id) => !onBIds.includes(id)),
      [],
      'the 4 orders in flight on A when the device left are delivered by B',
    );

    await waitFor(async () => (await count(`SELECT count(*) AS n FROM orders WHERE device_id = 'dev-move' AND state = 'confirmed'`)) === 20, 'all 20 orders to be confirmed', 30_000, 50);
    await waitFor(async () => (await count(`SELECT count(*) AS n FROM data_batches WHERE device_id = 'dev-move'`)) >= 150, 'the sink to store the 150 batches', 30_000, 50);
    await onB.ping(); // nothing more on its way
    t.same(onB.pending(FrameType.ORDER), [], 'no order is delivered a second time');
    t.equal(await count(`SELECT count(*) AS n FROM data_batches WHERE device_id = 'dev-move'`), 150, 'each batch stored once (61..100 arrived through A and B)');
    t.equal(await count(`SELECT count(*) AS n FROM data WHERE device_id = 'dev-move'`), 300, 'each value stored once');
    t.equal(await count(`SELECT count(DISTINCT value) AS n FROM data WHERE device_id = 'dev-move'`), 300, 'all 300 values there');
    const history = await adminCall<{ orders: { id: string; state: string }[] }>(a, `/devices/${dev}/orders`);
    t.same(history.orders.map((o) => [o.id, o.state]), ids.map((id) => [id, 'confirmed']), "A's history shows what B confirmed");
    // Each delivery to the device counts once: the 4 cut short on A were delivered again by B.
    const inFlightOnA = new Set(deliveredOnA.slice(5).map((o) => o.id));
    const deliveries = await query<{ order_id: string; deliveries: number }>(pgUrl, `SELECT order_id, deliveries FROM orders WHERE device_id = $1`, [dev]);
    t.same(
      Object.fromEntries(deliveries.map((r) => [r.order_id, r.deliveries])),
      Object.fromEntries(ids.map((id) => [id, inFlightOnA.has(id) ? 2 : 1])),
      'orders.deliveries: 2 for the orders delivered on A and again on B, 1 for the others',
    );
  });
}
