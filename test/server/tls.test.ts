import tls from 'node:tls';
import t from 'tap';
import { createCA, createDeviceCertificate } from '../../src/pki/index.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { within } from '../helpers/wait.js';

const pki = await makePki();
const otherCa = await createCA({ commonName: 'someone else' });
const day = 86_400_000;

/**
 * Connects, asks for orders and pings; resolves once the connection is gone. With TLS 1.3 the
 * client may finish its side of the handshake before the server checks the client certificate,
 * so "refused" means: closed, and not one frame received.
 */
function attempt(port: number, cert?: { cert: string; key: string }): Promise<{ error?: string; received: number }> {
  return within(
    new Promise((resolve) => {
      let received = 0;
      let error: string | undefined;
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, ...cert });
      socket.on('secureConnect', () => socket.write(Buffer.concat([encodeFrame(0, FrameType.FETCH_ORDERS), encodeFrame(1, FrameType.PING)])));
      socket.on('data', (d) => (received += d.length));
      socket.on('error', (e) => (error = e.message));
      socket.on('close', () => resolve({ error, received }));
    }),
    'the refused connection to close',
  );
}

t.test('certificates the server must refuse', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  await server.enqueueOrder('victim', readSection('secret'));
  const good = await server.connect('dev-ok');
  t.teardown(() => good.destroy());

  const refused: [string, { cert: string; key: string } | undefined][] = [
    ['from another CA', await createDeviceCertificate(otherCa, { deviceId: 'victim' })],
    ['expired', await createDeviceCertificate(pki.ca, { deviceId: 'victim', notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) })],
    ['not yet valid', await createDeviceCertificate(pki.ca, { deviceId: 'victim', notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 10 * day) })],
    ['without DeviceID', await createDeviceCertificate(pki.ca, { deviceId: 'victim', omitDeviceId: true })],
    ['no client certificate', undefined],
  ];
  for (const [name, cert] of refused) {
    const result = await attempt(server.ngttPort, cert);
    t.equal(result.received, 0, `${name}: not one byte of NGTT`);
    await good.ping(); // and the good device is served in between
  }
  t.equal(server.connectedDevices().map((d) => d.deviceId).join(), 'dev-ok');
  t.equal((await server.store.listOrders('victim', { state: 'queued' })).length, 1, "the victim's order was never handed out");
  t.ok(server.logs.some((l) => /without a usable DeviceID/.test(String(l.msg))), 'the missing DeviceID is logged');
  // Four refused at the handshake (the one without DeviceID passes TLS); logged rate-limited, counted all.
  const failed = [...server.ngttStats.handshakesFailed.values()].reduce((a, b) => a + b, 0);
  t.equal(failed, 4, `every refused handshake is counted (${JSON.stringify(Object.fromEntries(server.ngttStats.handshakesFailed))})`);
  t.ok(server.logs.some((l) => l.msg === 'TLS handshake refused' && l.reason), 'handshake refusals are logged with their reason');
});

t.test('the device verifies the server: a server certificate from another CA is refused', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const device = await pki.device('dev-x');
  await t.rejects(
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.ngttPort, servername: 'localhost', ca: otherCa.cert, ...device }, () => resolve(s));
      s.on('error', reject);
    }),
    /self-signed|unable to verify|certificate/i,
  );
  await t.rejects(
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.ngttPort, servername: 'example.com', ca: pki.ca.cert, ...device }, () => resolve(s));
      s.on('error', reject);
    }),
    /altnames|Hostname/i,
    'host name checked',
  );
});
