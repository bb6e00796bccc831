/**
 * Refuse rather than drop (issue #16): while the database link is down the server closes device
 * connections, refuses new ones and answers the device HTTPS API with 503; when the link is
 * back it accepts again. The outage is real: this test's database stops accepting connections
 * and its sessions are terminated (other databases are untouched).
 */
import t from 'tap';
import { FrameType } from '../../../src/protocol/index.js';
import { openPostgresStore } from '../../../src/server/postgres/index.js';
import { PG_SKIP_REASON, postgresReachable, setDatabaseReachable, testDatabase } from '../../helpers/postgres.js';
import { waitFor } from '../../helpers/rabbitmq.js';
import { RawDevice } from '../../helpers/raw-device.js';
import { makePki, startTestServer } from '../../helpers/server-fixture.js';
import { ResponseError, SmokHttpClient } from '../../helpers/smok-http.js';

if (!(await postgresReachable())) {
  t.plan(0, PG_SKIP_REASON);
} else {
  t.test('database down: devices refused (NGTT closed, HTTPS 503), accepted again when it is back', async (t) => {
    const pki = await makePki();
    const url = await testDatabase(t);
    const store = await openPostgresStore({ url, healthIntervalMs: 50, ownsOrderQueue: true });
    const server = await startTestServer(pki, { store });
    t.teardown(async () => {
      await server.close();
      await store.close();
    });
    const creds = { ca: pki.ca.cert, ...(await pki.device('dev')) };
    const http = new SmokHttpClient({ port: server.httpsPort, ...creds });
    t.teardown(() => http.close());

    const device = await RawDevice.connect(server.ngttPort, creds);
    device.send(1, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 1]] }]);
    await device.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
    const orderId = await server.enqueueOrder('dev', [{ orders: [{ type: 'write', path: 'W1', value: 1 }], disposition: 0 }]);
    device.send(0, FrameType.FETCH_ORDERS);
    t.equal((await device.takeOrder()).id, orderId, 'an order in flight when the database goes');
    t.match(await http.get('/v1/device'), { device_id: 'dev' });

    await setDatabaseReachable(url, false);
    await device.closed; // closed by the server once the store reported the link down
    t.pass('the open NGTT connection was closed');
    t.equal(store.available(), false);
    await t.rejects(RawDevice.connect(server.ngttPort, creds).then((d) => d.closed), 'a new NGTT connection is refused');
    const refused = await http.get('/v1/device').catch((e: unknown) => e);
    t.ok(refused instanceof ResponseError && refused.statusCode === 503, 'HTTPS answers 503');

    const back = new Promise<void>((resolve) => store.onAvailabilityChange((ok) => ok && resolve()));
    await setDatabaseReachable(url, true);
    await back;
    const again = await RawDevice.connect(server.ngttPort, creds);
    t.teardown(() => again.destroy());
    again.send(2, FrameType.DATA_STREAM, [{ path: 'W1', values: [[2, 2]] }]);
    await again.takeType(FrameType.DATA_STREAM_CONFIRM, 2);
    t.match(await http.get('/v1/device'), { device_id: 'dev' }, 'HTTPS serves again');
    t.same((await store.readData('dev')).map((s) => s.values), [[[1, 1]], [[2, 2]]]);
    again.send(0, FrameType.FETCH_ORDERS);
    const redelivered = await again.takeOrder();
    t.equal(redelivered.id, orderId, 'the order in flight during the outage is delivered again');
    again.send(redelivered.tid, FrameType.ORDER_CONFIRM);
    await waitFor(async () => (await store.getOrder(orderId))?.state === 'confirmed', 'the order to be confirmed');
  });
}
