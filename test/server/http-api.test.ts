import https from 'node:https';
import t from 'tap';
import { decode, encode } from '../../src/minijson/index.js';
import { startServer } from '../../src/server/index.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';

const pki = await makePki();
const MJ = 'application/minijson';

interface Reply {
  status: number;
  type: string;
  body: Buffer;
  value(): unknown;
}

function request(port: number, method: string, path: string, o: { deviceId?: string | null; headers?: Record<string, string>; body?: Uint8Array | string } = {}): Promise<Reply> {
  return (async () => {
    const creds = o.deviceId === null ? {} : await pki.device(o.deviceId ?? 'dev-h');
    return new Promise<Reply>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, method, path, servername: 'localhost', ca: pki.ca.cert, ...creds, headers: o.headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const type = String(res.headers['content-type'] ?? '');
          resolve({ status: res.statusCode!, type, body, value: () => (type.startsWith(MJ) ? decode(body) : JSON.parse(body.toString())) });
        });
      });
      req.on('error', reject);
      req.end(o.body);
    });
  })();
}

const mj = (value: unknown) => ({ headers: { 'content-type': MJ, accept: MJ }, body: encode(value) });
const json = (value: unknown) => ({ headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(value) });

t.test('HTTPS device API, in MiniJSON and in JSON (replies as Accept asks)', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const port = server.httpsPort;

  for (const [format, wrap] of [['MiniJSON', mj], ['JSON', json]] as const) {
    const a = await server.enqueueOrder('dev-h', readSection(`${format}-1`));
    const b = await server.enqueueOrder('dev-h', [...readSection(`${format}-2`), { orders: [{ type: 'wait', time: 1 }], disposition: 1 }]);
    const poll = await request(port, 'POST', '/v1/device/orders', wrap(null));
    t.equal(poll.status, 200, `${format}: poll`);
    t.ok(poll.type.startsWith(format === 'MiniJSON' ? MJ : 'application/json'), `${format}: reply type ${poll.type}`);
    t.same(poll.value(), [
      { orders: [{ type: 'read', path: `${format}-1` }], disposition: 0, id: a },
      { orders: [{ type: 'read', path: `${format}-2` }], disposition: 0, id: b },
      { orders: [{ type: 'wait', time: 1 }], disposition: 1, id: b },
    ]);
    t.same((await request(port, 'POST', '/v1/device/orders', wrap(null))).value(), [], `${format}: delivered at once, not again`);
    t.equal((await server.store.getOrder(a))?.state, 'delivered');

    const data = [{ path: `W-${format}`, values: [[1_700_000_000_000, 5], [false, 1_700_000_000_001, 'invalid']] }];
    const upload = await request(port, 'POST', '/v1/device/pathpoints', wrap(data));
    t.equal(upload.status, 200, `${format}: data upload`);
    t.same(upload.value(), { values_stored: 2 });
    t.same((await server.store.readData('dev-h', { path: `W-${format}` })).map((s) => s.values), [data[0].values]);

    const declared = await request(port, 'PUT', '/v1/device/pathpoints', wrap([{ path: `W-${format}`, storage_level: 1 }]));
    t.equal(declared.status, 200);
    const known = format === 'MiniJSON' ? [{ path: 'W-MiniJSON', storage_level: 1 }] : [{ path: 'W-MiniJSON', storage_level: 1 }, { path: 'W-JSON', storage_level: 1 }];
    t.same(declared.value(), known, `${format}: answers every pathpoint the server knows for the device`);
    t.same(await server.store.readPathpointDeclarations('dev-h'), known);

    const logs = [{ service: format, when: 5, message: 'hi', level: 20 }];
    const logged = await request(port, 'PUT', '/v1/device/device_logs', wrap(logs));
    t.equal(logged.status, 200);
    t.same(logged.value(), { records_stored: 1 });
    t.same((await server.store.readLogs('dev-h')).at(-1)?.service, format);

    const config = await request(port, 'GET', '/v1/device', { headers: { accept: wrap(null).headers.accept } });
    t.equal(config.status, 200);
    t.same(config.value(), { device_id: 'dev-h', verbose_name: 'dev-h', facets: [], culture_context: { language: 'en', timezone: 'UTC', units: 'metric' }, slave_devices: [] });
  }
});

t.test('HTTPS: bad bodies are 400 with a message, never 500', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const port = server.httpsPort;
  const bad: [string, string, Parameters<typeof request>[3]][] = [
    ['undecodable MiniJSON', '/v1/device/pathpoints', { headers: { 'content-type': MJ }, body: Buffer.from([0xff, 0x01]) }],
    ['broken JSON', '/v1/device/pathpoints', { headers: { 'content-type': 'application/json' }, body: '[{"path": ' }],
    ['wrong shape', '/v1/device/pathpoints', json([{ path: 'W1', values: [[1]] }])],
    ['not a list', '/v1/device/pathpoints', mj({ path: 'W1' })],
  ];
  for (const [name, path, o] of bad) {
    const r = await request(port, 'POST', path, o);
    t.equal(r.status, 400, name);
    t.match(r.value(), { status: /\S/ }, `${name}: says why`);
  }
  const logs = await request(port, 'PUT', '/v1/device/device_logs', mj([{ service: 1 }]));
  t.equal(logs.status, 400);
  t.match(logs.value(), { status: /service/ });
  t.equal((await request(port, 'PUT', '/v1/device/pathpoints', json([{ path: 'x' }]))).status, 400);
  t.same(await server.store.readData('dev-h'), [], 'nothing stored');
});

t.test('HTTPS: identity only from the certificate', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const port = server.httpsPort;
  await server.enqueueOrder('victim', readSection('secret'));
  const headers = { 'x-device-id': 'victim', 'x-ssl-client-dn': 'CN=victim', 'x-client-cert': encodeURIComponent((await pki.device('victim')).cert) };
  const poll = await request(port, 'POST', '/v1/device/orders', { deviceId: 'dev-h', headers });
  t.same(poll.value(), [], "headers do not make dev-h the victim");
  const config = await request(port, 'GET', '/v1/device', { deviceId: 'dev-h', headers });
  t.match(config.value(), { device_id: 'dev-h' });
  t.equal((await server.store.listOrders('victim', { state: 'queued' })).length, 1);

  const none = await request(port, 'GET', '/v1/device', { deviceId: null });
  t.equal(none.status, 403, 'no client certificate: 403');
  t.match(none.value(), { status: /client certificate is required/ });
  const noId = await pki.device('victim', { omitDeviceId: true });
  const r = await new Promise<number>((resolve, reject) =>
    https
      .request({ host: '127.0.0.1', port, path: '/v1/device', servername: 'localhost', ca: pki.ca.cert, ...noId, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
      .on('error', reject)
      .end(),
  );
  t.equal(r, 403, 'a certificate without DeviceID gets 403');
});

t.test('admin API', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const admin = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${server.adminPort}${path}`, init);
  const post = (path: string, body: unknown) => admin(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  const created = await post('/v1/admin/devices/dev-a/orders', [{ orders: [{ type: 'sysctl', op_type: 'reboot', op_args: {} }], disposition: 0 }]);
  t.equal(created.status, 201);
  const { id } = (await created.json()) as { id: string };
  t.match(id, /^[0-9a-f-]{36}$/);

  for (const [name, body] of [
    ['unknown order type', [{ orders: [{ type: 'explode' }], disposition: 0 }]],
    ['no sections', []],
    ['not a list', { orders: [] }],
    ['write without value', [{ orders: [{ type: 'write', path: 'W1' }] }]],
  ] as const) {
    const r = await post('/v1/admin/devices/dev-a/orders', body);
    t.equal(r.status, 400, name);
    t.match(await r.json(), { status: /\S/ });
  }
  const broken = await admin('/v1/admin/devices/dev-a/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[{' });
  t.equal(broken.status, 400);

  const list = (await (await admin('/v1/admin/devices/dev-a/orders')).json()) as { orders: { id: string; state: string }[] };
  t.same(list.orders.map((o) => [o.id, o.state]), [[id, 'queued']]);
  t.same(((await (await admin('/v1/admin/devices/dev-a/orders?state=confirmed')).json()) as { orders: [] }).orders, []);
  t.equal((await admin('/v1/admin/devices/dev-a/orders?state=bogus')).status, 400);
  t.match(await (await admin(`/v1/admin/orders/${id}`)).json(), { id, deviceId: 'dev-a', state: 'queued' });
  t.equal((await admin('/v1/admin/orders/nope')).status, 404);

  // Data (with a value beyond 2^53, which JSON gets as a string), logs, devices.
  await server.store.ingest('dev-a', { data: [{ series: [{ path: 'W1', values: [[1, 2n ** 60n], [2, 1.5]] }] }], logs: [[{ service: 's', when: 1, message: 'm', level: 10 }]] });
  t.match(await (await admin('/v1/admin/devices/dev-a/data?path=W1')).json(), { data: [{ path: 'W1', values: [[1, String(2n ** 60n)], [2, 1.5]] }] });
  t.match(await (await admin('/v1/admin/devices/dev-a/logs?limit=5')).json(), { logs: [{ service: 's', message: 'm' }] });
  t.equal((await admin('/v1/admin/devices/dev-a/data?limit=0')).status, 400);
  const mjData = await admin('/v1/admin/devices/dev-a/data', { headers: { accept: MJ } });
  t.equal(mjData.headers.get('content-type'), MJ);
  t.match(decode(new Uint8Array(await mjData.arrayBuffer())), { data: [{ values: [[1, 2n ** 60n]] }] }, 'MiniJSON keeps the bigint');

  const device = await server.connect('dev-a');
  t.teardown(() => device.destroy());
  await device.ping();
  const devices = (await (await admin('/v1/admin/devices')).json()) as { devices: { deviceId: string; connected: boolean; since: string | null; counters: { connections: number } }[] };
  const a = devices.devices.find((d) => d.deviceId === 'dev-a');
  t.match(a, { connected: true, counters: { connections: 1, pings: 1 } });
  t.ok(Date.parse(a!.since!) <= Date.now());
  const one = await (await admin('/v1/admin/devices/dev-a')).json();
  t.match(one, { deviceId: 'dev-a', connected: true, config: { device_id: 'dev-a' } });

  const patched = await admin('/v1/admin/devices/dev-a/config', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ verbose_name: 'Boiler room' }) });
  t.match(await patched.json(), { device_id: 'dev-a', verbose_name: 'Boiler room' });

  // The admin API is not on the device port.
  const onDevicePort = await request(server.httpsPort, 'GET', '/v1/admin/devices', { deviceId: 'dev-a' });
  t.equal(onDevicePort.status, 404);
});

t.test('admin API token, and no unprotected admin API off loopback', async (t) => {
  const server = await startTestServer(pki, { adminToken: 's3cret' });
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${server.adminPort}/v1/admin/devices`;
  t.equal((await fetch(url)).status, 401);
  t.equal((await fetch(url, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  t.equal((await fetch(url, { headers: { authorization: 'Bearer s3cret' } })).status, 200);

  await t.rejects(
    startServer({ tls: { ca: pki.ca.cert, ...pki.server }, ngttPort: 0, httpsPort: 0, adminPort: 0, adminHost: '0.0.0.0' }),
    /needs an admin token/,
  );
});

t.test('JSON schemas at the boundary: bad input is a 400 naming the field, in the {status} convention, and changes nothing', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const admin = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${server.adminPort}${path}`, init);
  const putConfig = (body: unknown) => admin('/v1/admin/devices/dev-s/config', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const refused = async (reply: Response | Promise<Response>, status: string, what: string) => {
    const r = await reply;
    t.equal(r.status, 400, `${what}: 400`);
    t.same(await r.json(), { status, code: 'FST_ERR_VALIDATION' }, `${what}: says why`);
  };

  // The admin config patch (served to devices by GET /v1/device).
  await refused(putConfig({ facets: 42 }), 'body.facets must be a list of strings', 'facets: 42');
  await refused(putConfig({ facets: ['a', 7] }), 'body.facets[1] must be string', 'a facet that is not a string');
  await refused(putConfig({ verbose_name: 42 }), 'body.verbose_name must be a string', 'a number is not coerced to a string');
  await refused(putConfig({ culture_context: { language: 5 } }), 'body.culture_context.language must be a string', 'nested');
  await refused(putConfig({ colour: 'red' }), 'body has an unknown field "colour"', 'unknown field');
  await refused(putConfig(['verbose_name']), 'body must be an object with configuration fields (verbose_name, facets, culture_context, slave_devices)', 'not an object');
  const served = await request(server.httpsPort, 'GET', '/v1/device', { deviceId: 'dev-s' });
  t.match(served.value(), { device_id: 'dev-s', verbose_name: 'dev-s', facets: [] }, 'the device is still served the untouched config');
  t.equal((await putConfig({ facets: ['heating'], culture_context: { language: 'pl' } })).status, 200);
  t.match((await request(server.httpsPort, 'GET', '/v1/device', { deviceId: 'dev-s' })).value(), { facets: ['heating'], culture_context: { language: 'pl', timezone: 'UTC' } });

  // Admin query strings, params and other bodies.
  await refused(admin('/v1/admin/devices/dev-s/orders?state=lost'), 'querystring.state must be one of queued, in-flight, confirmed, rejected, delivered', 'order state');
  await refused(admin('/v1/admin/devices/dev-s/data?limit=0'), 'querystring.limit must be a positive integer', 'limit 0');
  await refused(admin('/v1/admin/devices/dev-s/logs?limit=ten'), 'querystring.limit must be a positive integer', 'limit ten');
  await refused(
    admin('/v1/admin/devices/dev-s/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"orders":[]}' }),
    'body must be a list of sections {orders, disposition}',
    'order not a list',
  );
  await refused(
    admin('/v1/admin/devices/dev-s/pathpoints', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '[{"path":"T1"}]' }),
    'body[0] needs the field "storage_level"',
    'declaration without storage level',
  );
  await refused(admin(`/v1/admin/devices/dev-s/baobs/${'k'.repeat(300)}`), 'params.key must be a BAOB key (1 to 255 bytes)', 'BAOB key too long');
  t.same(await server.store.listOrders('dev-s'), [], 'no order was stored');

  // Device routes: the deployed client's convention, {status} as JSON (its default Accept).
  const device = async (method: string, path: string, body: string, status: string, what: string) => {
    const r = await request(server.httpsPort, method, path, { deviceId: 'dev-s', headers: { 'content-type': 'application/json' }, body });
    t.equal(r.status, 400, `${what}: 400`);
    t.ok(r.type.startsWith('application/json'), `${what}: JSON`);
    t.same(r.value(), { status, code: 'FST_ERR_VALIDATION' }, `${what}: says why`);
  };
  await device('POST', '/v1/device/pathpoints', '{"path":"P"}', 'body must be a list of {path, values}', 'data not a list');
  await device('PUT', '/v1/device/pathpoints', '[{"path":"P","storage_level":"high"}]', 'body[0].storage_level must be an integer', 'storage level');
  await device('PUT', '/v1/device/device_logs', '"log"', 'body must be a list of log records {service, when, message, level}', 'logs');
  await device('POST', '/v1/device/baobs', '{"k":1}', 'body must be a list of {key, version}', 'BAOB versions');
  await device('POST', `/v1/device/orders/message/${'u'.repeat(201)}`, '{}', 'params.uuid must be a message uuid (1 to 200 characters)', 'uuid too long');
  const mjError = await request(server.httpsPort, 'POST', '/v1/device/pathpoints', { deviceId: 'dev-s', ...mj({ path: 'P' }) });
  t.same([mjError.status, mjError.value()], [400, { status: 'body must be a list of {path, values}', code: 'FST_ERR_VALIDATION' }], 'in MiniJSON when Accept asks for it');
  t.same(await server.store.readData('dev-s'), [], 'nothing stored');
  const ok = await request(server.httpsPort, 'POST', '/v1/device/baobs', { deviceId: 'dev-s' });
  t.equal(ok.status, 200, 'a BAOB sync without a body is still fine (no BAOBs held)');
});
