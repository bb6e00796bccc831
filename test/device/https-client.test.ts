import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import t from 'tap';
import { decode, encode } from '../../src/minijson/index.js';
import { DeviceHttpsClient, HttpError, type HttpsClientOptions } from '../../src/device/https-client.js';
import { createTestCA, createTestPki, issueTestCertificate } from '../helpers/test-certs.js';

const pki = await createTestPki('dev-http');

interface Seen {
  method: string;
  url: string;
  contentType?: string;
  accept?: string;
  body: unknown;
  deviceCn: string;
}

type Route = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

async function startServer(route: Route, cert = pki.server) {
  const seen: Seen[] = [];
  let connections = 0;
  const server = https.createServer({ key: cert.key, cert: cert.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method!,
        url: req.url!,
        contentType: req.headers['content-type'],
        accept: req.headers.accept,
        body: body.length ? decode(body) : undefined,
        deviceCn: String((req.socket as TLSSocket).getPeerCertificate().subject.CN),
      });
      route(req, res, body);
    });
  });
  server.on('secureConnection', () => connections++);
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    seen,
    connections: () => connections,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const minijson = (res: ServerResponse, status: number, value?: unknown) => {
  if (value === undefined) return res.writeHead(status).end();
  const bytes = encode(value);
  res.writeHead(status, { 'Content-Type': 'application/minijson', 'Content-Length': bytes.length }).end(bytes);
};

/** The error a call failed with (tap's rejects() typing wants name or message). */
const errorOf = (call: Promise<unknown>) => call.then(() => undefined, (error: unknown) => error);

const client = (port: number, extra: Partial<HttpsClientOptions> = {}) =>
  new DeviceHttpsClient({ baseUrl: `https://127.0.0.1:${port}`, ca: pki.ca.cert, cert: pki.device.cert, key: pki.device.key, ...extra });

const SECTIONS = [{ orders: [{ type: 'write', path: 'W1', value: 5 }, { type: 'dance' }], disposition: 0 }];
const CONFIG = {
  device_id: 'dev-http',
  verbose_name: 'Boiler room',
  facets: ['smok5'],
  culture_context: { language: 'pl', timezone: 'Europe/Warsaw', units: 'metric' },
  slave_devices: [],
};

t.test('the API calls: methods, paths, MiniJSON bodies, client certificate, keep-alive', async (t) => {
  const server = await startServer((req, res) => {
    if (req.url === '/v1/device/orders') return minijson(res, 200, SECTIONS);
    if (req.url === '/v1/device' && req.method === 'GET') {
      // A server may answer JSON: the client understands it too.
      const json = JSON.stringify(CONFIG);
      return res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' }).end(json);
    }
    return minijson(res, 204);
  });
  t.teardown(server.close);
  const api = client(server.port);
  t.teardown(() => api.close());

  const polled = await api.pollOrders();
  t.same(polled.sections, [{ orders: [{ type: 'write', path: 'W1', value: 5 }], disposition: 0 }]);
  t.equal(polled.skipped.length, 1, 'unknown order type skipped');

  const series = [{ path: 'W1', values: [[1_700_000_000_000, 5]] }] as const;
  await api.uploadPathpoints(series as never);
  await api.uploadPathpoints(encode(series)); // a spool batch's payload, sent as is
  await api.declarePathpoints([{ path: 'W1', storage_level: 1 }]);
  await api.uploadLogs([{ service: 'device', when: 1, message: 'hi', level: 20 }]);
  t.same(await api.getConfiguration(), CONFIG);

  t.same(
    server.seen.map((s) => [s.method, s.url]),
    [
      ['POST', '/v1/device/orders'],
      ['POST', '/v1/device/pathpoints'],
      ['POST', '/v1/device/pathpoints'],
      ['PUT', '/v1/device/pathpoints'],
      ['PUT', '/v1/device/device_logs'],
      ['GET', '/v1/device'],
    ],
  );
  t.same(server.seen[1].body, series);
  t.same(server.seen[2].body, series);
  t.same(server.seen[3].body, [{ path: 'W1', storage_level: 1 }]);
  t.same(server.seen[4].body, [{ service: 'device', when: 1, message: 'hi', level: 20 }]);
  t.ok(server.seen.every((s) => s.deviceCn === 'dev-http'), 'every request carried the device certificate');
  t.ok(server.seen.every((s) => s.accept?.startsWith('application/minijson')));
  t.same(server.seen.filter((s) => s.body !== undefined).map((s) => s.contentType), Array(4).fill('application/minijson'));
  t.equal(server.connections(), 1, 'one kept-alive connection for all requests');
});

t.test('errors: 4xx not retryable, 5xx and no connection retryable', async (t) => {
  let status = 400;
  const server = await startServer((req, res) => {
    if (status === 0) return; // never answer
    if (status === 502) return res.writeHead(502, { 'Content-Type': 'text/html' }).end('<h1>Bad gateway</h1>');
    minijson(res, status, { reason: `status ${status}` });
  });
  t.teardown(server.close);
  const api = client(server.port, { timeoutMs: 200 });
  t.teardown(() => api.close());

  t.match(await errorOf(api.uploadLogs([])), { name: 'HttpError', status: 400, retryable: false, body: { reason: 'status 400' } });
  status = 404;
  t.match(await errorOf(api.pollOrders()), { status: 404, retryable: false });
  status = 503;
  t.match(await errorOf(api.pollOrders()), { status: 503, retryable: true, body: { reason: 'status 503' } });
  status = 502;
  t.match(await errorOf(api.pollOrders()), { status: 502, retryable: true, body: '<h1>Bad gateway</h1>' });
  status = 0;
  t.match(await errorOf(api.pollOrders()), { status: undefined, retryable: true, code: 'ETIMEDOUT' });

  await server.close();
  const error = await errorOf(api.pollOrders());
  t.ok(error instanceof HttpError);
  t.match(error, { status: undefined, retryable: true, code: 'ECONNREFUSED' });
});

t.test('send: any answer with its decoded body; JSON {status} errors; garbage success is retryable; abort', async (t) => {
  let reply: (res: ServerResponse) => void = (res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"ok":true}');
  const server = await startServer((_, res) => reply(res));
  t.teardown(server.close);
  const api = client(server.port, { timeoutMs: 2000 });
  t.teardown(() => api.close());
  t.match(await api.send('GET', '/v1/device'), { status: 200, body: { ok: true }, headers: { 'content-type': 'application/json' } }, 'JSON answers are understood; headers come along');
  t.same((await api.send('GET', '/v1/device', undefined, { raw: true })).body, Buffer.from('{"ok":true}'), 'raw: the bytes as sent');
  reply = (res) => res.writeHead(409, { 'Content-Type': 'application/json' }).end('{"status":"declarations conflict"}');
  t.match(await api.send('PUT', '/v1/device/pathpoints', encode([])), { status: 409, body: { status: 'declarations conflict' } });
  t.match(await errorOf(api.request('PUT', '/v1/device/pathpoints', encode([]))), { status: 409, message: /HTTP 409: declarations conflict$/ });
  reply = (res) => res.writeHead(200, { 'Content-Type': 'application/minijson' }).end(Buffer.from([0x07, 0xff]));
  t.match(await errorOf(api.send('GET', '/v1/device')), { name: 'HttpError', status: 200, retryable: true, message: /undecodable answer/ });
  reply = () => {}; // never answers
  const controller = new AbortController();
  const pending = errorOf(api.send('POST', '/v1/device/orders', undefined, { signal: controller.signal }));
  controller.abort();
  t.match(await pending, { name: 'HttpError', status: undefined, code: 'ABORT_ERR', retryable: false });
  t.match(await errorOf(api.send('GET', '/v1/device', undefined, { signal: controller.signal })), { code: 'ABORT_ERR' }, 'an aborted signal sends nothing');
});

t.test('a server certificate for another host, or from another CA, is refused', async (t) => {
  const server = await startServer((_, res) => minijson(res, 200, CONFIG));
  t.teardown(server.close);
  const wrongName = client(server.port, { servername: 'api.example.com' });
  t.teardown(() => wrongName.close());
  await t.rejects(wrongName.getConfiguration(), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });

  const byName = new DeviceHttpsClient({ baseUrl: `https://localhost:${server.port}`, ca: pki.ca.cert, cert: pki.device.cert, key: pki.device.key });
  t.teardown(() => byName.close());
  t.same(await byName.getConfiguration(), CONFIG, 'localhost is in the certificate');

  const otherCa = await createTestCA('Other CA');
  const impostorCert = await issueTestCertificate(otherCa, { commonName: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] });
  const impostor = await startServer((_, res) => minijson(res, 200, CONFIG), impostorCert);
  t.teardown(impostor.close);
  const fooled = client(impostor.port);
  t.teardown(() => fooled.close());
  await t.rejects(fooled.getConfiguration(), { code: /UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER/ });
  t.equal(impostor.seen.length, 0);
});

t.test('only https base URLs', async (t) => {
  t.throws(() => new DeviceHttpsClient({ baseUrl: 'http://127.0.0.1:1', ca: pki.ca.cert, cert: pki.device.cert, key: pki.device.key }), TypeError);
});
