/**
 * Admission control on the NGTT port: thousands of connections that never finish their TLS
 * handshake are held (up to the limits), refused beyond them and closed after the handshake
 * timeout, and a device from another address is served throughout.
 */
import https from 'node:https';
import net from 'node:net';
import t from 'tap';
import { FrameType } from '../../src/protocol/index.js';
import { sourceOf } from '../../src/server/admission.js';
import { RawDevice } from '../helpers/raw-device.js';
import { makePki, readSection, startTestServer, type TestServer } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();

interface Stalled {
  socket: net.Socket;
  /** Milliseconds from connect to close. */
  lifetime: Promise<number>;
  /** Resolves once the server has closed it: 'reset' when refused, 'closed' otherwise. */
  closed: Promise<'reset' | 'closed'>;
}

/** A TCP connection that starts no handshake (or half a TLS record header, every other one) and then stalls. */
function stall(port: number, localAddress: string, i: number): Promise<Stalled> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let reset = false;
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') reset = true;
      else reject(e);
    });
    const closed = new Promise<'reset' | 'closed'>((done) => socket.once('close', () => done(reset ? 'reset' : 'closed')));
    socket.once('connect', () => {
      const connectedAt = Date.now();
      if (i % 2) socket.write(Buffer.from([0x16, 0x03, 0x01]));
      resolve({ socket, closed, lifetime: closed.then(() => Date.now() - connectedAt) });
    });
  });
}

async function stallMany(port: number, localAddress: string, count: number): Promise<Stalled[]> {
  const out: Stalled[] = [];
  // In rounds, so the listen backlog never overflows into SYN retries.
  for (let i = 0; i < count; i += 250) out.push(...(await Promise.all([...Array(Math.min(250, count - i))].map((_, j) => stall(port, localAddress, i + j)))));
  return out;
}

const refused = (server: TestServer, reason: string) => server.ngttStats.refused.get(reason as never) ?? 0;

async function orderRoundTrip(server: TestServer, device: RawDevice, label: string): Promise<void> {
  const id = await server.enqueueOrder('dev-admitted', readSection(label));
  device.send(0, FrameType.FETCH_ORDERS);
  const order = await device.takeOrder();
  if (order.id !== id) throw new Error(`${label}: got order ${order.id}, not ${id}`);
  device.send(order.tid, FrameType.ORDER_CONFIRM);
  await until(async () => (await server.store.getOrder(id))?.state === 'confirmed', `${label}: order confirmed`);
}

t.test('per-source limits count IPv4 addresses and IPv6 /64s', async (t) => {
  t.equal(sourceOf('203.0.113.7'), '203.0.113.7');
  t.equal(sourceOf('::ffff:203.0.113.7'), '203.0.113.7', 'IPv4-mapped');
  t.equal(sourceOf('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  t.equal(sourceOf('2001:0DB8:0001:0002:ffff:1:2:3'), '2001:db8:1:2::/64', 'same /64, written out');
  t.equal(sourceOf('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(sourceOf('::1'), '0:0:0:0::/64');
  t.equal(sourceOf(undefined), 'unknown');
});

t.test('2 200 stalled handshakes from two addresses: per-source limit, device served, all closed after the timeout', async (t) => {
  // Long enough that opening 2 200 connections on a loaded 2-core machine (~5 s) fits in it.
  const handshakeTimeoutMs = 15_000;
  const server = await startTestServer(pki, { admission: { maxPendingHandshakes: 2500, maxPendingHandshakesPerSource: 1000, handshakeTimeoutMs } });
  t.teardown(() => server.close());
  const fromFirst = await stallMany(server.ngttPort, '127.0.0.1', 1200);
  const fromSecond = await stallMany(server.ngttPort, '127.0.0.2', 1000);
  await until(
    () => server.ngttStats.pendingHandshakes === 2000 && refused(server, 'max-handshakes-per-source') === 200,
    () => `the stalled connections to be held or refused (${JSON.stringify({ pending: server.ngttStats.pendingHandshakes, refused: Object.fromEntries(server.ngttStats.refused) })})`,
    10_000,
  );

  const results = await Promise.race([Promise.all(fromFirst.slice(1000).map((s) => s.closed)), new Promise((r) => setTimeout(r, 2000, 'not closed'))]);
  t.same(new Set(results as string[]), new Set(['reset']), '127.0.0.1 beyond its 1 000 is reset at once');

  const creds = { ca: pki.ca.cert, ...(await pki.device('dev-admitted')) };
  const device = await within(RawDevice.connect(server.ngttPort, creds, 'localhost', '127.0.0.3'), 'the device to connect while 2 000 handshakes stall');
  t.teardown(() => device.destroy());
  await orderRoundTrip(server, device, 'during the stall');
  t.equal(server.ngttStats.pendingHandshakes, 2000, 'the stalled handshakes were still held while the device was served');

  const held = [...fromFirst.slice(0, 1000), ...fromSecond];
  const lifetimes = await within(Promise.all(held.map((s) => s.lifetime)), 'every stalled connection to be closed by the server', handshakeTimeoutMs + 20_000);
  t.ok(Math.min(...lifetimes) >= handshakeTimeoutMs * 0.9, `each closed by the handshake timeout, not before (shortest ${Math.min(...lifetimes)} ms)`);
  await until(() => server.ngttStats.pendingHandshakes === 0, 'no handshake pending');
  t.equal(server.ngttStats.handshakesFailed.get('ERR_TLS_HANDSHAKE_TIMEOUT'), 2000, 'each counted as a handshake timeout');
  t.equal(server.connectedDevices().length, 1, 'the device is still connected');
  await device.ping();

  const refusalLines = server.logs.filter((l) => String(l.msg).startsWith('connection refused by admission control')).length;
  const timeoutLines = server.logs.filter((l) => String(l.msg).startsWith('TLS handshake refused')).length;
  t.ok(refusalLines >= 1 && refusalLines <= 2, `200 refusals, ${refusalLines} log line(s)`);
  t.ok(timeoutLines >= 1 && timeoutLines <= 2, `2 000 handshake timeouts, ${timeoutLines} log line(s)`);
});

t.test('the global handshake cap: a device is refused while it is full, served once the stalled ones time out', async (t) => {
  const handshakeTimeoutMs = 1500;
  const server = await startTestServer(pki, { admission: { maxPendingHandshakes: 40, handshakeTimeoutMs } });
  t.teardown(() => server.close());
  const creds = { ca: pki.ca.cert, ...(await pki.device('dev-admitted')) };

  const stalled = await stallMany(server.ngttPort, '127.0.0.1', 50);
  await until(() => server.ngttStats.pendingHandshakes === 40 && refused(server, 'max-handshakes') === 10, 'the handshake cap to hold');
  await t.rejects(RawDevice.connect(server.ngttPort, creds, 'localhost', '127.0.0.3'), 'no handshake slot left: the device is refused too');
  t.equal(refused(server, 'max-handshakes'), 11);

  await within(Promise.all(stalled.map((s) => s.closed)), 'the stalled ones to time out', handshakeTimeoutMs + 10_000);
  const device = await RawDevice.connect(server.ngttPort, creds, 'localhost', '127.0.0.3');
  t.teardown(() => device.destroy());
  await orderRoundTrip(server, device, 'after the timeout');
});

t.test('the connection cap: connections over it are dropped, counted and logged once', async (t) => {
  const handshakeTimeoutMs = 1500;
  const server = await startTestServer(pki, { admission: { maxConnections: 20, handshakeTimeoutMs } });
  t.teardown(() => server.close());
  const creds = { ca: pki.ca.cert, ...(await pki.device('dev-admitted')) };
  const device = await RawDevice.connect(server.ngttPort, creds);
  t.teardown(() => device.destroy());

  const stalled = await stallMany(server.ngttPort, '127.0.0.2', 30);
  await until(() => server.ngttStats.connections === 20 && refused(server, 'max-connections') === 11, 'the connection cap to hold');
  await t.rejects(RawDevice.connect(server.ngttPort, creds, 'localhost', '127.0.0.3'), 'a new connection is dropped while the cap is reached');
  await orderRoundTrip(server, device, 'at the cap');
  await within(Promise.all(stalled.map((s) => s.closed)), 'the stalled ones to be closed', handshakeTimeoutMs + 10_000);
  await until(() => server.ngttStats.connections === 1, 'only the device to be left');
  const lines = server.logs.filter((l) => String(l.msg).startsWith('connection refused by admission control'));
  t.equal(lines.length, 1, '12 refusals, one log line (the rest summed up later)');
  t.match(lines[0], { reason: 'max-connections' });
});

t.test('the HTTPS device port has the same admission control: stalled handshakes capped per source, a device served, all timed out', async (t) => {
  const handshakeTimeoutMs = 3000;
  const server = await startTestServer(pki, { admission: { maxPendingHandshakesPerSource: 200, handshakeTimeoutMs } });
  t.teardown(() => server.close());
  const stalled = await stallMany(server.httpsPort, '127.0.0.2', 300);
  await until(() => server.httpsStats.pendingHandshakes === 200 && server.httpsStats.refused.get('max-handshakes-per-source') === 100, 'the per-source cap to hold on the HTTPS port');

  const creds = await pki.device('dev-https');
  const status = await new Promise<number>((resolve, reject) => {
    const request = https.request(
      { host: '127.0.0.1', port: server.httpsPort, localAddress: '127.0.0.3', path: '/v1/device', servername: 'localhost', ca: pki.ca.cert, ...creds, agent: false },
      (reply) => {
        reply.resume();
        resolve(reply.statusCode!);
      },
    );
    request.on('error', reject);
    request.end();
  });
  t.equal(status, 200, 'a device is served over HTTPS while 200 handshakes stall');
  t.equal(server.httpsStats.pendingHandshakes, 200, 'they were still held');

  const lifetimes = await within(Promise.all(stalled.map((s) => s.lifetime)), 'every stalled HTTPS connection to be closed', handshakeTimeoutMs + 15_000);
  t.ok(Math.min(...lifetimes.slice(0, 200)) >= handshakeTimeoutMs * 0.9, 'the held ones closed by the handshake timeout, not before');
  t.ok(Math.max(...lifetimes.slice(200)) < handshakeTimeoutMs, 'the ones over the cap reset at once');
  await until(() => server.httpsStats.pendingHandshakes === 0, 'no HTTPS handshake pending');
  t.equal(server.httpsStats.handshakesFailed.get('ERR_TLS_HANDSHAKE_TIMEOUT'), 200);
});
