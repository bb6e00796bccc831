/**
 * The HTTPS device API called exactly as the original Python client calls it (test/helpers/
 * smok-http.ts): MiniJSON bodies, `Accept: *\/*`, every answer read as JSON, 200/201 success,
 * otherwise `resp.json()['status']`. Every route, and the error replies, Fastify's own included.
 */
import tls from 'node:tls';
import t from 'tap';
import { encode } from '../../src/minijson/index.js';
import { ClientKeyError, ResponseError, SmokHttpClient } from '../helpers/smok-http.js';
import { makePki, readSection, startTestServer, type TestServer } from '../helpers/server-fixture.js';

const pki = await makePki();

async function client(server: TestServer, deviceId: string | null): Promise<SmokHttpClient> {
  const creds = deviceId === null ? {} : await pki.device(deviceId);
  return new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, ...creds });
}

/** The error the client raises: its status code and `status` text. */
async function failure(t: Tap, p: Promise<unknown>): Promise<ResponseError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ClientKeyError) t.fail(`the client would raise KeyError: ${e.message}`);
    if (e instanceof ResponseError) return e;
    throw e;
  }
  throw new Error('expected an error reply');
}
type Tap = { fail(message: string): void };

t.test('every success is 200 with a JSON body the client parses', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const api = await client(server, 'dev-py');
  t.teardown(() => api.close());

  // Orders: a poll without a body (requests sends Content-Length: 0, no Content-Type).
  const id = await server.enqueueOrder('dev-py', [{ orders: [{ type: 'message', uuid: 'msg-1' }, { type: 'read', path: 'W1' }], disposition: 0 }]);
  t.same(await api.post('/v1/device/orders'), [{ orders: [{ type: 'message', uuid: 'msg-1' }, { type: 'read', path: 'W1' }], disposition: 0, id }]);
  t.same(await api.post('/v1/device/orders'), [], 'delivered at once');

  // The message order's receipt, retried by the client: recorded once, shown by the admin API.
  const receipt = (await api.post('/v1/device/orders/message/msg-1')) as { uuid: string; received_at: number };
  t.match(receipt, { uuid: 'msg-1', received_at: Number });
  t.same(await api.post('/v1/device/orders/message/msg-1'), receipt, 'a retry answers the same receipt');
  const listed = (await (await fetch(`http://127.0.0.1:${server.adminPort}/v1/admin/devices/dev-py/orders`)).json()) as { orders: { id: string; messages: unknown }[] };
  t.same(listed.orders.find((o) => o.id === id)?.messages, [{ uuid: 'msg-1', receivedAt: receipt.received_at }]);

  // Data and logs: 200 with how much was stored (a 204 made the client send them again).
  t.same(await api.post('/v1/device/pathpoints', { json: [{ path: 'W1', values: [[1_700_000_000_000, 5], [1_700_000_001_000, 6.5]] }] }), { values_stored: 2 });
  t.same((await server.store.readData('dev-py')).map((s) => s.values), [[[1_700_000_000_000, 5], [1_700_000_001_000, 6.5]]]);
  t.same(await api.put('/v1/device/device_logs', { json: [{ service: 'boiler', when: 1, message: 'hi', level: 20 }] }), { records_stored: 1 });

  // Pathpoint declarations: answered with the list as the server knows it; the client iterates it.
  await fetch(`http://127.0.0.1:${server.adminPort}/v1/admin/devices/dev-py/pathpoints`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([{ path: 'W2', storage_level: 2 }, { path: 'fOperator', storage_level: 1 }]),
  });
  t.same(await api.put('/v1/device/pathpoints', { json: [{ path: 'W1', storage_level: 1 }, { path: 'W2', storage_level: 1 }] }), [
    { path: 'W2', storage_level: 2 },
    { path: 'fOperator', storage_level: 1 },
    { path: 'W1', storage_level: 1 },
  ], "the operator's pathpoints and storage levels, plus the new one");

  t.match(await api.get('/v1/device'), { device_id: 'dev-py', culture_context: { timezone: 'UTC' } });

  // BAOBs: sync, download (direct_response: bytes + X-SMOK-BAOB-Version), upload (multipart).
  await server.store.publishBaob('dev-py', 'script.py', Buffer.from('print(1)'));
  await server.store.publishBaob('dev-py', 'mine', Buffer.from('v1'));
  t.same(await api.post('/v1/device/baobs', { json: [{ key: 'mine', version: 3 }, { key: 'stray', version: 0 }] }), {
    should_download: ['script.py'],
    should_upload: ['mine'],
    should_delete: ['stray'],
  });
  const [bytes, headers] = (await api.get('/v1/device/baobs/script.py', { directResponse: true })) as [Buffer, Record<string, string>];
  t.equal(bytes.toString(), 'print(1)');
  t.equal(headers['x-smok-baob-version'], '1', 'int(headers["X-SMOK-BAOB-Version"]) works');
  t.same(await api.put('/v1/device/baobs/mine', { files: { file: Buffer.from('device v3'), data: Buffer.from(JSON.stringify({ version: 3 })) } }), { key: 'mine', version: 3 });
  t.equal(Buffer.from((await server.store.getBaob('dev-py', 'mine'))!.data).toString(), 'device v3');
  t.same(await api.post('/v1/device/baobs', { json: [{ key: 'mine', version: 3 }, { key: 'script.py', version: 1 }] }), { should_download: [], should_upload: [], should_delete: [] }, 'in sync');
});

t.test('every error is JSON with "status", Fastify\'s own included', async (t) => {
  const server = await startTestServer(pki, { maxFrameLength: 4096, maxBaobBytes: 1000 });
  t.teardown(() => server.close());
  const api = await client(server, 'dev-err');
  t.teardown(() => api.close());
  await server.store.publishBaob('dev-err', 'cfg', Buffer.from('x'));

  const cases: [string, () => Promise<unknown>, number, RegExp][] = [
    ['unknown route', () => api.get('/v1/device/predicates'), 404, /no route GET \/v1\/device\/predicates/],
    ['wrong method', () => api.request('DELETE', '/v1/device/orders'), 404, /no route/],
    ['undecodable URL', () => api.get('/v1/device/baobs/%E0%A4%A'), 400, /not a valid url/],
    ['malformed data', () => api.post('/v1/device/pathpoints', { json: [{ path: 'W1', values: [[1]] }] }), 400, /values\[0\]/],
    ['malformed logs', () => api.put('/v1/device/device_logs', { json: [{ service: 1 }] }), 400, /service/],
    ['malformed declarations', () => api.put('/v1/device/pathpoints', { json: [{ path: 'W1' }] }), 400, /storage_level/],
    ['malformed BAOB list', () => api.post('/v1/device/baobs', { json: [{ key: 'a/b', version: 1 }] }), 400, /"\/"/],
    ['body too large', () => api.post('/v1/device/pathpoints', { json: [{ path: 'W1', values: Array.from({ length: 1000 }, (_, i) => [i, i]) }] }), 413, /larger than 4096 bytes/],
    ['missing BAOB', () => api.get('/v1/device/baobs/nothing'), 404, /no BAOB "nothing"/],
    ['BAOB not newer', () => api.put('/v1/device/baobs/cfg', { files: { file: Buffer.from('y'), data: Buffer.from('{"version": 1}') } }), 409, /holds version 1/],
    ['BAOB the server lacks', () => api.put('/v1/device/baobs/stray', { files: { file: Buffer.from('y'), data: Buffer.from('{"version": 4}') } }), 409, /should delete it/],
    ['BAOB too large', () => api.put('/v1/device/baobs/cfg', { files: { file: Buffer.alloc(5000), data: Buffer.from('{"version": 9}') } }), 413, /BAOB larger than 1000 bytes/],
    ['BAOB without version', () => api.put('/v1/device/baobs/cfg', { files: { file: Buffer.from('y'), data: Buffer.from('{}') } }), 400, /version/],
    ['BAOB without file part', () => api.put('/v1/device/baobs/cfg', { files: { data: Buffer.from('{"version": 9}') } }), 400, /"file"/],
    ['BAOB upload not multipart', () => api.put('/v1/device/baobs/cfg', { json: { version: 9 } }), 400, /multipart/],
  ];
  for (const [name, call, code, text] of cases) {
    const e = await failure(t, call());
    t.equal(e.statusCode, code, `${name}: ${code}`);
    t.match(e.status, text, `${name}: says why (${e.status})`);
  }
  t.equal(Buffer.from((await server.store.getBaob('dev-err', 'cfg'))!.data).toString(), 'x', 'no refused upload changed the BAOB');

  // Bodies the client does not send, but a broken proxy or script might.
  const raw = async (headers: Record<string, string>, body: Buffer) => {
    const creds = await pki.device('dev-err');
    const res = await fetchTls(server.httpsPort, creds, 'POST', '/v1/device/pathpoints', headers, body);
    return { status: res.status, body: JSON.parse(res.body) as { status?: string } };
  };
  const undecodable = await raw({ 'content-type': 'application/minijson' }, Buffer.from([0xff, 0x01]));
  t.match(undecodable, { status: 400, body: { status: /not valid MiniJSON/ } });
  const unsupported = await raw({ 'content-type': 'application/xml' }, Buffer.from('<W1>5</W1>'));
  t.match(unsupported, { status: 415, body: { status: /Unsupported Media Type/ } });
  const badJson = await raw({ 'content-type': 'application/json' }, Buffer.from('[{'));
  t.match(badJson, { status: 400, body: { status: /\S/ } });

  // A request Node cannot even parse: still JSON with "status".
  const garbage = await rawTls(server.httpsPort, await pki.device('dev-err'), 'NONSENSE\r\n\r\n');
  t.match(garbage, /^HTTP\/1\.1 400 /);
  t.match(JSON.parse(garbage.slice(garbage.indexOf('\r\n\r\n') + 4)), { status: /Bad Request/ });
});

t.test('without a usable certificate: 403 with "status"', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const anonymous = await client(server, null);
  t.teardown(() => anonymous.close());
  const e = await failure(t, anonymous.post('/v1/device/orders'));
  t.equal(e.statusCode, 403);
  t.match(e.status, /client certificate is required/);

  const noId = await pki.device('x', { omitDeviceId: true });
  const withoutId = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, ...noId });
  t.teardown(() => withoutId.close());
  const e2 = await failure(t, withoutId.get('/v1/device'));
  t.equal(e2.statusCode, 403);
  t.match(e2.status, /DeviceID/);

  const { createCA, createDeviceCertificate } = await import('../../src/pki/index.js');
  const foreign = await createDeviceCertificate(await createCA({ commonName: 'other CA' }), { deviceId: 'dev-py' });
  const impostor = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, ...foreign });
  t.teardown(() => impostor.close());
  const e3 = await failure(t, impostor.post('/v1/device/orders'));
  t.equal(e3.statusCode, 403, 'a certificate from another CA: 403');
  t.match(e3.status, /not accepted/);
  await server.enqueueOrder('dev-py', readSection('secret'));
  t.equal((await server.store.listOrders('dev-py', { state: 'queued' })).length, 1, 'and nothing was handed out');
});

t.test('JSON unless Accept names MiniJSON', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const creds = await pki.device('dev-acc');
  const body = Buffer.from(encode([{ path: 'W1', values: [[1, 1]] }]));
  const asked = await fetchTls(server.httpsPort, creds, 'POST', '/v1/device/pathpoints', { 'content-type': 'application/minijson', accept: '*/*' }, body);
  t.match(asked.headers['content-type'], /^application\/json/, 'MiniJSON body, Accept */*: JSON');
  const mj = await fetchTls(server.httpsPort, creds, 'POST', '/v1/device/pathpoints', { 'content-type': 'application/minijson', accept: 'application/minijson, application/json;q=0.5' }, body);
  t.equal(mj.headers['content-type'], 'application/minijson', 'asked for MiniJSON: MiniJSON');
  const x = await fetchTls(server.httpsPort, creds, 'GET', '/v1/device', { accept: 'application/x-minijson' }, Buffer.alloc(0));
  t.equal(x.headers['content-type'], 'application/minijson', 'application/x-minijson counts too');
  const err = await fetchTls(server.httpsPort, creds, 'GET', '/v1/nothing', { accept: 'application/minijson' }, Buffer.alloc(0));
  t.equal(err.status, 404);
  t.equal(err.headers['content-type'], 'application/minijson', 'errors follow Accept as well');
});

/** One HTTPS request with raw headers and body; the body as text. */
async function fetchTls(port: number, creds: { cert: string; key: string }, method: string, path: string, headers: Record<string, string>, body: Buffer) {
  const https = await import('node:https');
  return new Promise<{ status: number; headers: Record<string, string>; body: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method, path, servername: 'localhost', ca: pki.ca.cert, ...creds, headers: { ...headers, 'content-length': String(body.length) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks).toString('latin1') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `text` on a fresh TLS connection and returns everything the server sends back. */
function rawTls(port: number, creds: { cert: string; key: string }, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, ...creds }, () => socket.write(text));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
  });
}
