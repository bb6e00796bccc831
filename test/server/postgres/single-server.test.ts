/**
 * `ngtt server --store postgres` as a process: one server without a broker, everything in
 * PostgreSQL. A batch sent again is stored once; a killed server's in-flight orders come back.
 */
import t from 'tap';
import { FrameType } from '../../../src/protocol/index.js';
import { adminCall, startGatewayProcess, writeServerPem, type GatewayProcess } from '../../helpers/gateway-process.js';
import { PG_SKIP_REASON, postgresReachable, query, testDatabase } from '../../helpers/postgres.js';
import { order, waitFor } from '../../helpers/rabbitmq.js';
import { RawDevice } from '../../helpers/raw-device.js';
import { makePki } from '../../helpers/server-fixture.js';

if (!(await postgresReachable())) {
  t.plan(0, PG_SKIP_REASON);
} else {
  t.test('single server on PostgreSQL: exactly-once ingest on re-send, orders survive a SIGKILL', async (t) => {
    const pki = await makePki();
    const pem = await writeServerPem(pki);
    const pgUrl = await testDatabase(t);
    const running: GatewayProcess[] = [];
    t.teardown(async () => {
      for (const p of running) await p.kill();
      await pem.remove();
    });
    const start = async () => {
      const p = await startGatewayProcess('server', ['--store', 'postgres', '--pg-url', pgUrl, ...pem.args]);
      running.push(p);
      return p;
    };
    const creds = { ca: pki.ca.cert, ...(await pki.device('dev')) };
    const batch = (i: number) => [{ path: 'W1', values: [[1_700_000_000_000 + i, i]] }];

    const first = await start();
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) ids.push((await adminCall<{ id: string }>(first, '/devices/dev/orders', 'POST', order(i))).id);
    const d1 = await RawDevice.connect(first.ngttPort, creds);
    t.teardown(() => d1.destroy());
    for (let i = 1; i <= 10; i++) d1.send(i, FrameType.DATA_STREAM, batch(i));
    for (let i = 1; i <= 10; i++) await d1.takeType(FrameType.DATA_STREAM_CONFIRM, i);
    d1.send(0, FrameType.FETCH_ORDERS);
    const got = await d1.takeOrders(3);
    d1.send(got[0].tid, FrameType.ORDER_CONFIRM);
    await waitFor(async () => (await adminCall<{ state: string }>(first, `/orders/${ids[0]}`)).state === 'confirmed', 'the first order to be confirmed');

    // Killed with two orders in flight; the device's confirms for batches 6–10 "were lost".
    await first.kill();
    const second = await start();
    const d2 = await RawDevice.connect(second.ngttPort, creds);
    t.teardown(() => d2.destroy());
    for (let i = 6; i <= 12; i++) d2.send(i, FrameType.DATA_STREAM, batch(i));
    for (let i = 6; i <= 12; i++) await d2.takeType(FrameType.DATA_STREAM_CONFIRM, i);
    t.same(await query(pgUrl, 'SELECT count(*)::int AS n FROM data'), [{ n: 12 }], '12 distinct batches stored once each');
    t.same((await query<{ v: number }>(pgUrl, `SELECT value AS v FROM data WHERE device_id = 'dev' ORDER BY ts`)).map((r) => r.v), Array.from({ length: 12 }, (_, i) => i + 1));

    d2.send(0, FrameType.FETCH_ORDERS);
    const again = await d2.takeOrders(2);
    t.same(again.map((o) => o.id), ids.slice(1), 'the two orders in flight at the kill are delivered again, in order');
    for (const o of again) d2.send(o.tid, FrameType.ORDER_CONFIRM);
    await d2.ping();
    t.equal(d2.pending(FrameType.ORDER).length, 0, 'the confirmed one is not delivered again');
  });
}
