/**
 * BAOBs and message receipts in a fleet on RabbitMQ: two gateways on one prefix, A runs the sink
 * (the BAOBs live in its local store), B reaches them over the broker (baob-rpc.ts). A device
 * sees the same BAOBs through either gateway; without a sink a BAOB request fails fast with 503.
 */
import t from 'tap';
import { openRabbitStore, topology, type RabbitStore } from '../../../src/server/rabbitmq/index.js';
import { createMemoryStore } from '../../../src/server/store/index.js';
import { BaobDevice, type LocalBaob } from '../../helpers/baob-device.js';
import { BROKER_URL, brokerReachable, cleanup, SKIP_REASON, uniquePrefix, waitFor } from '../../helpers/rabbitmq.js';
import { makePki, startTestServer, type TestServer } from '../../helpers/server-fixture.js';
import { ResponseError, SmokHttpClient } from '../../helpers/smok-http.js';

if (!(await brokerReachable())) {
  t.plan(0, SKIP_REASON);
} else {
  const pki = await makePki();
  type Tap = { teardown(fn: () => unknown): void };

  const gateway = async (t: Tap, prefix: string, sink: boolean): Promise<{ server: TestServer; store: RabbitStore }> => {
    const store = await openRabbitStore({
      url: BROKER_URL,
      prefix,
      local: createMemoryStore(),
      sink,
      baobTimeoutMs: 5_000,
      quorumGroupSize: 1,
      connectionName: `${prefix}-gw`,
      reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
    });
    const server = await startTestServer(pki, { store });
    t.teardown(async () => {
      await server.close();
      await store.close();
    });
    return { server, store };
  };
  /** A device on `server`; pass `held` to carry its BAOBs over from another gateway. */
  const httpDevice = async (t: Tap, server: TestServer, deviceId: string, held?: Map<string, LocalBaob>) => {
    const http = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, ...(await pki.device(deviceId)) });
    t.teardown(() => http.close());
    return { http, baobs: new BaobDevice(http, held) };
  };
  const publishVia = async (server: TestServer, deviceId: string, key: string, value: string) => {
    const r = await fetch(`http://127.0.0.1:${server.adminPort}/v1/admin/devices/${deviceId}/baobs/${key}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: value });
    return (await r.json()) as { version: number; status?: string };
  };

  t.test('the same BAOBs from every gateway; uploads and versions fleet-wide', async (t) => {
    const prefix = uniquePrefix();
    const dev = 'dev-fleet-b';
    t.teardown(() => cleanup(topology({ prefix }), [dev]));
    const a = await gateway(t, prefix, true);
    const b = await gateway(t, prefix, false);

    t.match(await publishVia(b.server, dev, 'config.json', 'from B'), { version: 1 }, 'published through the gateway without the sink');
    t.match(await publishVia(a.server, dev, 'config.json', 'from A'), { version: 2 });
    const onA = await httpDevice(t, a.server, dev);
    t.match(await onA.baobs.syncHttps(), { downloaded: ['config.json'] });
    t.equal(onA.baobs.text('config.json'), 'from A');

    // The device moves to B, changes the BAOB, uploads it there; A's store (the sink) has it.
    const onB = await httpDevice(t, b.server, dev, onA.baobs.baobs);
    onB.baobs.set('config.json', 'edited on the device');
    t.match(await onB.baobs.syncHttps(), { uploaded: ['config.json'] });
    t.match(await a.store.local.getBaob(dev, 'config.json'), { version: 3 });
    t.equal(Buffer.from((await a.store.local.getBaob(dev, 'config.json'))!.data).toString(), 'edited on the device');

    // NGTT sync through B answers from the same store.
    const raw = await b.server.connect(dev);
    t.teardown(() => raw.destroy());
    const fresh = new BaobDevice(onB.http);
    t.match(await fresh.syncNgtt(raw, 1), { downloaded: ['config.json'] });
    t.equal(fresh.text('config.json'), 'edited on the device');

    // Stale upload through B after a newer publish through A: refused, the higher version stands.
    await publishVia(a.server, dev, 'config.json', 'operator v4');
    const stale = await onB.http.put('/v1/device/baobs/config.json', { files: { file: Buffer.from('stale'), data: Buffer.from('{"version": 4}') } }).catch((e: unknown) => e);
    t.match(stale, { statusCode: 409 });

    // Publishes racing through both gateways get distinct, consecutive versions.
    const racing = await Promise.all(Array.from({ length: 10 }, (_, i) => publishVia(i % 2 ? a.server : b.server, dev, 'race', `v${i}`)));
    t.same(racing.map((r) => r.version).sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

    // Deletion through B reaches devices on A.
    t.equal((await fetch(`http://127.0.0.1:${b.server.adminPort}/v1/admin/devices/${dev}/baobs/race`, { method: 'DELETE' })).status, 200);
    onA.baobs.set('race', 'x');
    t.match(await onA.baobs.syncHttps(), { deleted: ['race'] });
  });

  t.test('message receipts recorded on one gateway show on the other', async (t) => {
    const prefix = uniquePrefix();
    const dev = 'dev-fleet-m';
    t.teardown(() => cleanup(topology({ prefix }), [dev]));
    const a = await gateway(t, prefix, true);
    const b = await gateway(t, prefix, false);
    const id = await a.server.enqueueOrder(dev, [{ orders: [{ type: 'message', uuid: 'hello' }], disposition: 0 }]);
    await waitFor(async () => (await b.store.getOrder(id)) !== null, 'B to know the order');
    const onB = await httpDevice(t, b.server, dev);
    t.match(await onB.http.post('/v1/device/orders/message/hello'), { uuid: 'hello', received_at: Number });
    await waitFor(async () => (await a.store.getOrder(id))?.messages?.[0].receivedAt != null, 'A to show the receipt');
    t.match((await b.store.getOrder(id))?.messages, [{ uuid: 'hello', receivedAt: Number }], 'and B, which recorded it');
  });

  t.test('no gateway runs the sink: BAOB requests fail at once with 503 and a reason', async (t) => {
    const prefix = uniquePrefix();
    const dev = 'dev-fleet-n';
    t.teardown(() => cleanup(topology({ prefix }), [dev]));
    const c = await gateway(t, prefix, false);
    const { http } = await httpDevice(t, c.server, dev);
    const e = (await http.post('/v1/device/baobs', { json: [] }).catch((err: unknown) => err)) as ResponseError;
    t.ok(e instanceof ResponseError);
    t.equal(e.statusCode, 503);
    t.match(e.status, /no gateway of the fleet runs the sink/, 'returned by the broker at once (not a timeout)');
  });
}
