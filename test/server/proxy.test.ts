/**
 * Behind a TLS-terminating proxy (opt-in): from a trusted proxy address the HTTPS device API
 * takes the device certificate from X-SSL-Client-Certificate (PEM, newlines as tabs, as the
 * deployed client sends it in staging), verifies it against the CA, and ignores the header from
 * anyone else. The "proxy" here is the test itself on 127.0.0.1.
 */
import t from 'tap';
import { createCA, createDeviceCertificate } from '../../src/pki/index.js';
import { ProxyCertificates, trustedProxyList } from '../../src/server/proxy-certificate.js';
import { ClientKeyError, ResponseError, SmokHttpClient } from '../helpers/smok-http.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';

const pki = await makePki();
const stageCert = (await pki.device('dev-stage')).cert;

async function refusal(p: Promise<unknown>): Promise<ResponseError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ResponseError) return e;
    if (e instanceof ClientKeyError) throw new Error(`KeyError in the client: ${e.message}`);
    throw e;
  }
  throw new Error('expected a refusal');
}

t.test('from a trusted proxy: the header certificate is the device, once verified', async (t) => {
  const server = await startTestServer(pki, { trustedProxies: ['127.0.0.1'] });
  t.teardown(() => server.close());
  const staging = (headerCert: string) => {
    const c = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, headerCert });
    t.teardown(() => c.close());
    return c;
  };

  const id = await server.enqueueOrder('dev-stage', readSection('W1'));
  const device = staging(stageCert);
  t.same(await device.post('/v1/device/orders'), [{ orders: [{ type: 'read', path: 'W1' }], disposition: 0, id }], 'orders of the device the header names');
  t.same(await device.post('/v1/device/pathpoints', { json: [{ path: 'W1', values: [[1, 2]] }] }), { values_stored: 1 });
  t.equal((await server.store.readData('dev-stage')).length, 1);
  t.equal(server.counters('dev-stage').httpRequests, 2);

  // nginx's $ssl_client_escaped_cert (URL-escaped PEM) works as well.
  const https = await import('node:https');
  const status = await new Promise<number>((resolve, reject) =>
    https
      .request(
        { host: '127.0.0.1', port: server.httpsPort, path: '/v1/device', servername: 'localhost', ca: pki.ca.cert, agent: false, headers: { 'x-ssl-client-certificate': encodeURIComponent(stageCert) } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      )
      .on('error', reject)
      .end(),
  );
  t.equal(status, 200, 'URL-escaped PEM');

  const otherCa = await createCA({ commonName: 'someone else' });
  const refused: [string, string, RegExp][] = [
    ['a certificate from another CA', (await createDeviceCertificate(otherCa, { deviceId: 'dev-stage' })).cert, /not issued by the device CA/],
    ['the server certificate', pki.server.cert, /not a client certificate/],
    ['an expired device certificate', (await pki.device('dev-old', { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) })).cert, /not valid now/],
    ['a certificate without DeviceID', (await pki.device('dev-x', { omitDeviceId: true })).cert, /DeviceID/],
    ['the CA certificate', pki.ca.cert, /CA certificate/],
    ['no PEM at all', 'hello', /no PEM certificate/],
  ];
  for (const [what, cert, reason] of refused) {
    const e = await refusal(staging(cert).post('/v1/device/orders'));
    t.equal(e.statusCode, 403, `${what}: 403`);
    t.match(e.status, reason, `${what}: ${e.status}`);
  }
  t.equal((await server.store.listOrders('dev-stage', { state: 'delivered' })).length, 1, 'nothing else was handed out');
});

t.test('from anyone else the header is ignored', async (t) => {
  const server = await startTestServer(pki, { trustedProxies: ['10.9.9.9', '192.168.0.0/16'] });
  t.teardown(() => server.close());
  await server.enqueueOrder('victim', readSection('secret'));
  const victimCert = (await pki.device('victim')).cert;

  const headerOnly = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, headerCert: victimCert });
  t.teardown(() => headerOnly.close());
  const e = await refusal(headerOnly.post('/v1/device/orders'));
  t.equal(e.statusCode, 403);
  t.match(e.status, /client certificate is required/);

  const other = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, ...(await pki.device('dev-own')), headerCert: victimCert });
  t.teardown(() => other.close());
  t.same(await other.post('/v1/device/orders'), [], 'with its own certificate it is itself, not the header');
  t.match(await other.get('/v1/device'), { device_id: 'dev-own' });
  t.equal((await server.store.listOrders('victim', { state: 'queued' })).length, 1);
});

t.test('without trusted proxies (the default) the header is ignored', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const headerOnly = new SmokHttpClient({ port: server.httpsPort, ca: pki.ca.cert, headerCert: (await pki.device('victim')).cert });
  t.teardown(() => headerOnly.close());
  t.equal((await refusal(headerOnly.get('/v1/device'))).statusCode, 403);
});

t.test('trusted proxy addresses: IPs, CIDR ranges, IPv4-mapped IPv6; bad entries refused', async (t) => {
  const p = new ProxyCertificates({ ca: pki.ca.cert, trustedProxies: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'] });
  t.ok(p.isTrustedProxy('127.0.0.1'));
  t.ok(p.isTrustedProxy('::ffff:127.0.0.1'));
  t.ok(p.isTrustedProxy('10.200.3.4'));
  t.ok(p.isTrustedProxy('fd12::1'));
  t.notOk(p.isTrustedProxy('127.0.0.2'));
  t.notOk(p.isTrustedProxy('11.0.0.1'));
  t.notOk(p.isTrustedProxy(undefined));
  for (const bad of ['localhost', '10.0.0.0/33', '1.2.3.4/x', '']) t.throws(() => trustedProxyList([bad]), RangeError, bad);
  await t.rejects(startTestServer(pki, { trustedProxies: ['proxy.example'] }), /not an IP address/);
});
