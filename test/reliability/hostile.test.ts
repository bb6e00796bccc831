/**
 * Hostile peers that the existing tests do not cover (see docs/reliability.md for the map):
 * TLS-level abuse (mismatched key, plain TCP, slowloris), authorisation (another device's or
 * another connection's order tid, floods, a 4 GiB frame header) and prototype pollution through
 * MiniJSON and JSON bodies. Each time, a well-behaved device is served throughout.
 */
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { encode } from '../../src/minijson/index.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import type { RawDevice } from '../helpers/raw-device.js';
import { makePki, readSection, startTestServer, type TestServer } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();

/** The well-behaved device completes an order round trip and a data upload. */
async function served(server: TestServer, good: RawDevice, label: string): Promise<void> {
  const id = await server.enqueueOrder('dev-good', readSection(label));
  const order = await good.takeOrder();
  if (order.id !== id) throw new Error(`${label}: got ${order.id}, not ${id}`);
  good.send(order.tid, FrameType.ORDER_CONFIRM);
  good.send(0x100, FrameType.DATA_STREAM, [{ path: 'G', values: [[Date.now(), 1]] }]);
  await good.takeType(FrameType.DATA_STREAM_CONFIRM, 0x100);
  await until(async () => (await server.store.getOrder(id))?.state === 'confirmed', `${label}: the good order confirmed`);
}

async function goodDevice(server: TestServer, t: { teardown(fn: () => unknown): void }): Promise<RawDevice> {
  const good = await server.connect('dev-good');
  t.teardown(() => good.destroy());
  good.send(0, FrameType.FETCH_ORDERS);
  return good;
}

/** A raw TCP connection; resolves with what it received once the server has closed it. */
function rawTcp(port: number, send?: Buffer): { socket: net.Socket; closed: Promise<Buffer> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  socket.on('data', (c) => chunks.push(c));
  socket.on('error', () => {});
  if (send) socket.once('connect', () => socket.write(send));
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks)))) };
}

t.test('TLS: a key that does not match the certificate fails on the client side', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const a = await pki.device('dev-a');
  const b = await pki.device('dev-b');
  await t.rejects(
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.ngttPort, servername: 'localhost', ca: pki.ca.cert, cert: a.cert, key: b.key }, () => resolve(s));
      s.on('error', reject);
    }),
    /key values mismatch/,
  );
  t.equal(server.connectedDevices().length, 0);
});

t.test('TLS: plain TCP and slowloris clients are closed by the server; a device is served meanwhile', async (t) => {
  // The handshake timeout of both device ports is min(idleTimeoutMs, handshake timeout); short here. Before
  // the fix Node reported the timeout (tlsClientError) but kept the sockets open for ever.
  const server = await startTestServer(pki, { idleTimeoutMs: 400 });
  t.teardown(() => server.close());
  const good = await goodDevice(server, t);
  const keepTalking = setInterval(() => good.send(0x7fff, FrameType.PING), 100);
  t.teardown(() => clearInterval(keepTalking));

  const plain = rawTcp(server.ngttPort, Buffer.concat([encodeFrame(0, FrameType.FETCH_ORDERS), encodeFrame(1, FrameType.PING)]));
  const received = await within(plain.closed, 'the plain TCP client to be closed', 3000);
  t.ok(received.length === 0 || received[0] === 0x15, `no NGTT frame, at most a TLS alert (got ${received.length} bytes)`);

  const started = Date.now();
  // On each device port (NGTT, HTTPS): 10 clients that connect and send nothing, 10 that send
  // half a TLS record header and stop.
  const loris = [...Array(40)].map((_, i) => rawTcp(i < 20 ? server.ngttPort : server.httpsPort, i % 2 ? Buffer.from([0x16, 0x03, 0x01]) : undefined));
  await served(server, good, 'during the slowloris');
  await within(Promise.all(loris.map((l) => l.closed)), 'every slowloris connection to be closed by the server', 5000);
  t.ok(Date.now() - started >= 300, 'closed by the handshake timeout, not at once');
  // The clients never end or destroy their side: each close came from the server.
  await served(server, good, 'after the slowloris');
  t.same(server.connectedDevices().map((d) => d.deviceId), ['dev-good'], 'only the good device holds a session');
});

t.test("authorisation: a tid of another device's or another connection's order settles nothing", async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const good = await goodDevice(server, t);
  const victimOrder = await server.enqueueOrder('victim', readSection('V'));
  const victim = await server.connect('victim');
  victim.send(0, FrameType.FETCH_ORDERS);
  const held = await victim.takeOrder();

  const attacker = await server.connect('attacker');
  attacker.send(held.tid, FrameType.ORDER_CONFIRM);
  await within(attacker.closed, 'the attacker to be disconnected');
  t.equal((await server.store.getOrder(victimOrder))?.state, 'in-flight', "the victim's order is untouched");
  t.equal(server.counters('attacker').protocolErrors, 1);

  // The victim's next connection replaces the first: the order goes back to the queue, and a
  // confirmation of the old connection's tid on the new one settles nothing.
  const second = await server.connect('victim');
  await within(victim.closed, 'the old connection to be replaced');
  second.send(held.tid, FrameType.ORDER_CONFIRM);
  await within(second.closed, 'a stale tid closes the new connection');
  t.equal((await server.store.getOrder(victimOrder))?.state, 'queued', 'not confirmed by a stale tid: still to deliver');
  const third = await server.connect('victim');
  t.teardown(() => third.destroy());
  third.send(0, FrameType.FETCH_ORDERS);
  const again = await third.takeOrder();
  t.equal(again.id, victimOrder, 'delivered again');
  third.send(again.tid, FrameType.ORDER_CONFIRM);
  await until(async () => (await server.store.getOrder(victimOrder))?.state === 'confirmed', 'confirmed on its own connection');
  await served(server, good, 'after the attacks');
  t.equal(server.counters('dev-good').protocolErrors, 0);
});

t.test('floods of FETCH_ORDERS and PING from a device that does not read, and a 4 GiB frame header', async (t) => {
  const server = await startTestServer(pki, { window: 4 });
  t.teardown(() => server.close());
  const good = await goodDevice(server, t);
  for (let i = 0; i < 10; i++) await server.enqueueOrder('flooder', readSection(`F${i}`));
  const flooder = await server.connect('flooder');
  t.teardown(() => flooder.destroy());
  flooder.socket.pause(); // reads nothing: the echoes pile up on the server until it stops reading
  const N = 20_000;
  const flood = Buffer.concat([...Array(N)].flatMap((_, i) => [encodeFrame(0, FrameType.FETCH_ORDERS), encodeFrame((i % 0x7fff) + 1, FrameType.PING)]));
  flooder.sendRaw(flood);
  await served(server, good, 'during the flood');
  flooder.socket.resume();
  await until(() => flooder.received.filter((f) => f.type === FrameType.PING).length === N, `${N} PING echoes once the flooder reads`, 15_000);
  t.equal(flooder.received.filter((f) => f.type === FrameType.ORDER).length, 4, `${N} FETCH_ORDERS still give at most the window`);
  t.equal(flooder.isClosed, false, 'a flood of valid frames is served, not punished');

  const liar = await server.connect('liar');
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0xffffffff, 0);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(FrameType.DATA_STREAM, 6);
  liar.sendRaw(Buffer.concat([header, Buffer.alloc(1024, 0x41)]));
  await within(liar.closed, 'a 4 GiB frame header closes the connection at once', 2000);
  t.equal(server.counters('liar').protocolErrors, 1);
  await served(server, good, 'after the 4 GiB header');
});

/** An object with an own "__proto__" key, as a hostile MiniJSON or JSON encoder would send it. */
function withProto<T extends object>(value: T, proto: unknown = { polluted: 'yes' }): T {
  Object.defineProperty(value, '__proto__', { value: proto, enumerable: true, writable: true, configurable: true });
  return value;
}

t.test('__proto__ keys in NGTT, HTTPS and admin bodies pollute nothing and corrupt nothing', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  t.teardown(() => void delete (Object.prototype as Record<string, unknown>).polluted);
  const device = await server.connect('dev-p');
  t.teardown(() => device.destroy());
  device.send(1, FrameType.DATA_STREAM, [withProto({ path: 'P1', values: [[1, 1]] })]);
  await device.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
  device.send(0, FrameType.LOGS, [withProto({ service: 's', when: 1, message: 'm', level: 20 })]);
  await device.ping();

  const creds = await pki.device('dev-p');
  const post = (method: string, path: string, type: string, body: Uint8Array | string) =>
    new Promise<number>((resolve, reject) =>
      https
        .request({ host: '127.0.0.1', port: server.httpsPort, method, path, servername: 'localhost', ca: pki.ca.cert, ...creds, headers: { 'content-type': type }, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
        .on('error', reject)
        .end(body),
    );
  const mjStatus = await post('POST', '/v1/device/pathpoints', 'application/minijson', encode([withProto({ path: 'P2', values: [[2, 2]] })]));
  t.equal(mjStatus, 200, 'MiniJSON: an extra key is ignored, the data stored');
  const jsonStatus = await post('POST', '/v1/device/pathpoints', 'application/json', '[{"path":"P3","values":[[3,3]],"__proto__":{"polluted":"yes"}}]');
  t.ok(jsonStatus === 200 || jsonStatus === 400, `JSON: stored or refused (${jsonStatus}), never 500`);
  t.equal(await post('PUT', '/v1/device/device_logs', 'application/minijson', encode([withProto({ service: 's', when: 2, message: 'n', level: 20 })])), 200);

  const admin = `http://127.0.0.1:${server.adminPort}/v1/admin/devices/dev-p`;
  const put = (body: Uint8Array | string, type: string) => fetch(`${admin}/config`, { method: 'PUT', headers: { 'content-type': type }, body });
  const a = await put('{"verbose_name":"boiler","__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}', 'application/json');
  t.ok(a.status < 500, `admin JSON config: ${a.status}`);
  const b = await put(encode(withProto({ verbose_name: 'boiler', culture_context: withProto({ language: 'pl' }) })), 'application/minijson');
  // The config schema allows no unknown field: the own "__proto__" key is refused, nothing stored.
  t.equal(b.status, 400, `admin MiniJSON config with a __proto__ key: ${b.status}`);
  t.match(await b.json(), { status: 'body has an unknown field "__proto__"' });
  t.equal((await put(encode({ verbose_name: 'boiler', culture_context: { language: 'pl' } }), 'application/minijson')).status, 200, 'the same without it is stored');
  const orderStatus = (await fetch(`${admin}/orders`, { method: 'POST', headers: { 'content-type': 'application/minijson' }, body: encode([withProto({ orders: [withProto({ type: 'read', path: 'Q' })], disposition: 0 })]) })).status;
  t.ok(orderStatus < 500, `admin MiniJSON order: ${orderStatus}`);

  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');
  t.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
  const data = await server.store.readData('dev-p', { limit: 100 });
  t.same(
    data.map((s) => [s.path, s.values]),
    [['P1', [[1, 1]]], ['P2', [[2, 2]]], ...(jsonStatus === 200 ? [['P3', [[3, 3]]]] : [])],
    'the stored data is intact',
  );
  t.equal(Object.getPrototypeOf(data[0]), Object.prototype, 'read back with a plain prototype');
  const config = await server.store.getDeviceConfig('dev-p');
  t.equal(config.device_id, 'dev-p', 'the device id cannot be overwritten');
  t.equal(Object.getPrototypeOf(config), Object.prototype);
  t.equal(Object.getPrototypeOf(config.culture_context), Object.prototype);
  t.equal((await server.store.readLogs('dev-p')).length, 2, 'both log records stored');
  // Admin and device ports are separate: the admin API is not on the device's HTTPS port.
  t.equal(await post('PUT', '/v1/admin/devices/dev-p/config', 'application/json', '{"verbose_name":"x"}'), 404, 'no admin API on the HTTPS device port');
  t.equal((await server.store.getDeviceConfig('dev-p')).verbose_name, 'boiler');
});
