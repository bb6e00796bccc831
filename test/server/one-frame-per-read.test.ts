/**
 * The server against a client that parses one frame per readable event (the original Python
 * client, spec §12; see test/helpers/one-frame-client.ts): every ORDER and every reply must be
 * handled without any other traffic arriving, through window bursts, redelivery after a
 * reconnect and pipelined DATA_STREAMs. The first test shows the emulation does catch a server
 * that lets frames share a TLS record.
 */
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { decode } from '../../src/minijson/index.js';
import { NgttConnection } from '../../src/device/index.js';
import { encodeFrame, encodeValueFrame, FrameDecoder, FrameType, HEADER_SIZE, NGTT_STREAM_ALPN, type Frame } from '../../src/protocol/index.js';
import { FrameWriter } from '../../src/server/frame-writer.js';
import { OneFramePerReadClient } from '../helpers/one-frame-client.js';
import { RecordProxy } from '../helpers/record-proxy.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();
const write = (n: number) => [{ orders: [{ type: 'write', path: 'W1', value: n }], disposition: 0 }];
const orderId = (f: Frame) => (decode(f.payload) as { id: string }[])[0].id;
const types = (frames: Frame[]) => frames.map((f) => f.type);

async function legacyClient(port: number, deviceId: string, options: tls.ConnectionOptions = {}) {
  return OneFramePerReadClient.connect(port, { ca: pki.ca.cert, ...(await pki.device(deviceId)) }, options);
}

t.test('the emulation catches frames sharing a record, and FrameWriter keeps them apart', async (t) => {
  // A bare TLS server that writes four 40-byte frames either back to back (what the server
  // did before: Node hands the 2nd..4th to TLS in one writev, one record) or via FrameWriter.
  const frames = [1, 2, 3, 4].map((i) => encodeValueFrame(i, FrameType.ORDER, [{ orders: [], disposition: 0, id: `order-${i}` }]));
  const total = frames.reduce((n, f) => n + f.length, 0);
  for (const mode of ['back to back', 'FrameWriter'] as const) {
    const server = tls.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true }, (socket) => {
      if (mode === 'FrameWriter') {
        const writer = new FrameWriter(socket);
        for (const f of frames) writer.write(f);
      } else {
        for (const f of frames) socket.write(f);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = await legacyClient((server.address() as AddressInfo).port, 'dev-x');
    await client.waitArrived(total);
    if (mode === 'back to back') {
      t.ok(client.handled.length < 4, `back to back: only ${client.handled.length} of 4 frames handled once all bytes are there`);
      t.ok(client.stalls.some((s) => s.framesWaiting > 0), `back to back: the client is left with whole frames it will not parse (${client.describe()})`);
    } else {
      t.equal(client.handled.length, 4, 'FrameWriter: all 4 frames handled');
      t.same(client.stalls, [], 'FrameWriter: never a frame waiting for other traffic');
    }
    await client.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

t.test('window bursts: every ORDER handled as it arrives, each in its own TLS record', async (t) => {
  const server = await startTestServer(pki, { window: 4 });
  t.teardown(() => server.close());
  const ids: string[] = [];
  for (let i = 1; i <= 10; i++) ids.push(await server.enqueueOrder('dev-burst', write(i)));

  // TLS 1.2 through a proxy that reads the record headers: there, every record of type 23 is
  // application data, so the records can be counted from outside.
  const proxy = await RecordProxy.start(server.ngttPort);
  t.teardown(() => proxy.close());
  const client = await legacyClient(proxy.port, 'dev-burst', { maxVersion: 'TLSv1.2' });
  t.teardown(() => client.destroy());

  client.send([0, FrameType.FETCH_ORDERS]);
  const first = await client.waitHandled(4);
  t.same(types(first), [1, 1, 1, 1].map(() => FrameType.ORDER));
  t.same(first.map(orderId), ids.slice(0, 4), 'the first window, in order, with no other traffic');

  // The client confirms the whole window in one write; the next four come as a burst again.
  client.send(...first.map((f): [number, number] => [f.tid, FrameType.ORDER_CONFIRM]));
  const second = (await client.waitHandled(8)).slice(4);
  t.same(second.map(orderId), ids.slice(4, 8));
  client.send(...second.map((f): [number, number] => [f.tid, FrameType.ORDER_CONFIRM]));
  const third = (await client.waitHandled(10)).slice(8);
  t.same(third.map(orderId), ids.slice(8));
  client.send(...third.map((f): [number, number] => [f.tid, FrameType.ORDER_CONFIRM]));
  await until(async () => (await server.store.listOrders('dev-burst', { state: 'confirmed' })).length === 10, 'all 10 confirmed');
  t.same(client.stalls, [], 'no frame ever waited for other traffic');

  const records = proxy.applicationData();
  t.equal(records.length, 10, '10 ORDERs, 10 application-data records');
  const overhead = new Set(records.map((r, i) => r.length - (HEADER_SIZE + client.handled[i].payload.length)));
  t.equal(overhead.size, 1, `each record holds exactly one frame (constant TLS overhead ${[...overhead]})`);
});

t.test('redelivery after a reconnect arrives frame by frame too', async (t) => {
  const server = await startTestServer(pki, { window: 4 });
  t.teardown(() => server.close());
  const ids: string[] = [];
  for (let i = 1; i <= 6; i++) ids.push(await server.enqueueOrder('dev-again', write(i)));

  const a = await legacyClient(server.ngttPort, 'dev-again');
  a.send([0, FrameType.FETCH_ORDERS]);
  t.same((await a.waitHandled(4)).map(orderId), ids.slice(0, 4));
  await a.destroy(); // executed nothing, confirmed nothing
  await until(async () => (await server.store.listOrders('dev-again', { state: 'queued' })).length === 6, 'the window requeued');

  const b = await legacyClient(server.ngttPort, 'dev-again');
  t.teardown(() => b.destroy());
  b.send([0, FrameType.FETCH_ORDERS]);
  const again = await b.waitHandled(4);
  t.same(again.map(orderId), ids.slice(0, 4), 'the same four, redelivered');
  b.send(...again.map((f): [number, number] => [f.tid, FrameType.ORDER_CONFIRM]));
  t.same((await b.waitHandled(6)).slice(4).map(orderId), ids.slice(4));
  t.same([...a.stalls, ...b.stalls], []);
});

t.test('pipelined DATA_STREAMs, a SYNC_BAOB and a PING: each reply handled on arrival', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const client = await legacyClient(server.ngttPort, 'dev-pipe');
  t.teardown(() => client.destroy());

  const batch = (n: number) => [{ path: 'W1', values: [[1_700_000_000_000 + n, n]] }];
  client.send(
    [1, FrameType.DATA_STREAM, batch(1)],
    [2, FrameType.DATA_STREAM, batch(2)],
    [3, FrameType.DATA_STREAM, [{ path: '', values: [] }]], // malformed: REJECT
    [4, FrameType.DATA_STREAM, batch(4)],
    [5, FrameType.SYNC_BAOB_REQUEST, {}],
    [6, FrameType.DATA_STREAM, batch(6)],
    [7, FrameType.DATA_STREAM, batch(7)],
    [8, FrameType.PING],
    [9, FrameType.DATA_STREAM, batch(9)],
  );
  const replies = await client.waitHandled(9);
  const byTid = new Map(replies.map((f) => [f.tid, f.type]));
  t.same(
    [...byTid.entries()].sort((x, y) => x[0] - y[0]),
    [
      [1, FrameType.DATA_STREAM_CONFIRM],
      [2, FrameType.DATA_STREAM_CONFIRM],
      [3, FrameType.DATA_STREAM_REJECT],
      [4, FrameType.DATA_STREAM_CONFIRM],
      [5, FrameType.SYNC_BAOB_RESPONSE],
      [6, FrameType.DATA_STREAM_CONFIRM],
      [7, FrameType.DATA_STREAM_CONFIRM],
      [8, FrameType.PING],
      [9, FrameType.DATA_STREAM_CONFIRM],
    ],
  );
  t.same(client.stalls, [], 'no reply waited for other traffic');
  t.equal((await server.store.readData('dev-pipe')).length, 6);
});

t.test('an ORDER longer than one 512-byte read arrives whole without other traffic', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const sections = [{ orders: Array.from({ length: 60 }, (_, i) => ({ type: 'write', path: `W${i}`, value: `value number ${i}` })), disposition: 0 }];
  const id = await server.enqueueOrder('dev-big', sections);
  await server.enqueueOrder('dev-big', write(1));
  const client = await legacyClient(server.ngttPort, 'dev-big');
  t.teardown(() => client.destroy());
  client.send([0, FrameType.FETCH_ORDERS]);
  const [big, small] = await client.waitHandled(2);
  t.ok(big.payload.length > 3 * 512, `a ${big.payload.length}-byte ORDER`);
  t.equal(orderId(big), id);
  t.equal(small.type, FrameType.ORDER);
  t.same(client.stalls, [], 'nothing held inside the TLS library where select cannot see it');
});

t.test('a device that offers ALPN ngtt-stream (this runtime does) may get frames together', async (t) => {
  const server = await startTestServer(pki, { window: 4 });
  t.teardown(() => server.close());
  for (let i = 1; i <= 4; i++) await server.enqueueOrder('dev-stream', write(i));
  const proxy = await RecordProxy.start(server.ngttPort);
  t.teardown(() => proxy.close());
  const creds = { ca: pki.ca.cert, ...(await pki.device('dev-stream')) };
  const socket = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ...creds, maxVersion: 'TLSv1.2', ALPNProtocols: [NGTT_STREAM_ALPN] });
  t.teardown(() => socket.destroy());
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  t.equal(socket.alpnProtocol, NGTT_STREAM_ALPN);
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  socket.on('data', (chunk: Buffer) => frames.push(...decoder.push(chunk)));
  socket.write(encodeFrame(0, FrameType.FETCH_ORDERS));
  await until(() => frames.length === 4, '4 ORDERs');
  t.ok(proxy.applicationData().length < 4, `4 ORDERs in ${proxy.applicationData().length} records: no record per frame for this device`);
  t.match(server.logs.find((l) => l.deviceId === 'dev-stream' && l.msg === 'device connected'), { recordPerFrame: false });

  // The device runtime offers it; the original client (no ALPN) does not.
  const runtime = await NgttConnection.connect({ host: '127.0.0.1', port: server.ngttPort, ...(await pki.device('dev-runtime')), ca: pki.ca.cert });
  t.teardown(() => runtime.close());
  await until(() => server.logs.some((l) => l.deviceId === 'dev-runtime' && l.msg === 'device connected'), 'the runtime connected');
  t.match(server.logs.find((l) => l.deviceId === 'dev-runtime' && l.msg === 'device connected'), { recordPerFrame: false });
  const legacy = await legacyClient(server.ngttPort, 'dev-legacy');
  t.teardown(() => legacy.destroy());
  await until(() => server.logs.some((l) => l.deviceId === 'dev-legacy' && l.msg === 'device connected'), 'the legacy client connected');
  t.match(server.logs.find((l) => l.deviceId === 'dev-legacy' && l.msg === 'device connected'), { recordPerFrame: true });
});
