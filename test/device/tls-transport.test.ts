import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import t from 'tap';
import { createActor, forwardTo, setup } from 'xstate';
import { socketActor } from '../../src/device/socket-actor.js';
import { decode, encode } from '../../src/minijson/index.js';
import { encodeFrame, encodeValueFrame, FrameDecoder, FrameType, ProtocolError, type Frame } from '../../src/protocol/index.js';
import { ConnectionClosedError, NgttSocket, type NgttConnectOptions } from '../../src/device/tls-transport.js';
import { createTestCA, createTestPki, issueTestCertificate } from '../helpers/test-certs.js';

const pki = await createTestPki('dev-tls');

interface TestServer {
  port: number;
  /** Server side of each accepted, verified connection. */
  connections: tls.TLSSocket[];
  nextConnection(): Promise<tls.TLSSocket>;
  close(): Promise<void>;
}

async function startServer(cert = pki.server): Promise<TestServer> {
  const connections: tls.TLSSocket[] = [];
  const waiters: ((s: tls.TLSSocket) => void)[] = [];
  const server = tls.createServer({ key: cert.key, cert: cert.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (socket) => {
    socket.on('error', () => {});
    connections.push(socket);
    waiters.shift()?.(socket);
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    nextConnection: () => (connections.length > waiters.length ? Promise.resolve(connections[waiters.length]) : new Promise((r) => waiters.push(r))),
    close: async () => {
      for (const c of connections) c.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const clientOptions = (port: number, extra: Partial<NgttConnectOptions> = {}): NgttConnectOptions => ({
  host: '127.0.0.1',
  port,
  ca: pki.ca.cert,
  cert: pki.device.cert,
  key: pki.device.key,
  ...extra,
});

/** Collects frames a server-side socket receives. */
function serverFrames(socket: tls.TLSSocket): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  socket.on('data', (chunk: Buffer) => frames.push(...decoder.push(chunk)));
  return frames;
}

async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('frames round trip both ways, server writes in odd chunks', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  const socket = await NgttSocket.connect(clientOptions(server.port));
  const peer = await server.nextConnection();
  t.equal(peer.authorized, true, 'server verified the device certificate');
  const atServer = serverFrames(peer);

  const received: Frame[] = [];
  socket.on('frame', (f) => received.push({ ...f, payload: Buffer.from(f.payload) }));

  const values = [{ path: 'W1', values: [[1, 2]] }, 'x'.repeat(5000), [1, 2, 3]];
  values.forEach((v, i) => t.ok(socket.sendValue(i + 1, FrameType.DATA_STREAM, v)));
  socket.sendEmpty(0, FrameType.FETCH_ORDERS);
  // Already-encoded payloads: a small one is copied behind its header, a large one is written
  // after it separately; the peer sees the same frames, in order.
  const small = [{ path: 'f1', values: [[1_760_000_000_000, 0.5]] }];
  const large = [{ path: 'f2', values: Array.from({ length: 2000 }, (_, i) => [1_760_000_000_000 + i, i / 8]) }];
  socket.sendEncoded(4, FrameType.DATA_STREAM, encode(large)); // past the high-water mark: false, still queued
  socket.sendEncoded(5, FrameType.DATA_STREAM, encode(small));
  await until(() => atServer.length === 6, 'frames at the server');
  t.same(atServer.slice(0, 3).map((f) => decode(f.payload)), values);
  t.same([atServer[3].type, atServer[3].payload.length], [FrameType.FETCH_ORDERS, 0]);
  t.same(atServer.slice(4).map((f) => [f.tid, f.type]), [[4, FrameType.DATA_STREAM], [5, FrameType.DATA_STREAM]]);
  t.same(atServer.slice(4).map((f) => decode(f.payload)), [large, small]);
  t.ok(atServer[4].payload.length > 4096, 'the large payload took the separate write');

  // Server -> device, one stream of frames cut into 1, 2, 3, ... byte pieces.
  const outgoing = [
    encodeValueFrame(7, FrameType.ORDER, [{ orders: [{ type: 'read', path: 'W1' }], disposition: 0 }]),
    encodeFrame(1, FrameType.DATA_STREAM_CONFIRM),
    encodeValueFrame(2, FrameType.DATA_STREAM_REJECT, { reason: 'bad' }),
  ];
  const bytes = Buffer.concat(outgoing);
  for (let at = 0, size = 1; at < bytes.length; at += size, size++) {
    peer.write(bytes.subarray(at, at + size));
    if (size % 4 === 0) await new Promise((r) => setImmediate(r));
  }
  await until(() => received.length === 3, 'frames at the device');
  t.same(received.map((f) => [f.tid, f.type]), [[7, 1], [1, 5], [2, 6]]);
  t.same(decode(received[2].payload), { reason: 'bad' });

  t.equal(socket.bytesSent, atServer.reduce((n, f) => n + 8 + f.payload.length, 0));
  t.equal(socket.bytesReceived, bytes.length);
  t.equal(socket.framesReceived, 3);

  const closed = once(socket, 'close');
  const peerEnded = once(peer, 'end');
  await socket.close();
  t.same(await closed, [undefined], 'a graceful close carries no error');
  await peerEnded;
  t.equal(socket.closed, true);
  t.equal(socket.send(encodeFrame(0, 0)), false, 'sending on a closed socket drops the frame');
  await t.rejects(socket.drain(), ConnectionClosedError);
});

t.test('the server certificate must verify: wrong host name, unknown CA', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  await t.rejects(NgttSocket.connect(clientOptions(server.port, { servername: 'ngtt.example.com' })), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  // 'localhost' is in the certificate: the same server verifies under that name.
  const ok = await NgttSocket.connect(clientOptions(server.port, { servername: 'localhost' }));
  ok.destroy();

  const otherCa = await createTestCA('Other CA');
  const impostor = await issueTestCertificate(otherCa, { commonName: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] });
  const fake = await startServer(impostor);
  t.teardown(fake.close);
  await t.rejects(NgttSocket.connect(clientOptions(fake.port)), { code: /UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER/ });
});

t.test('a device certificate the server does not trust is refused', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  const otherCa = await createTestCA('Rogue CA');
  const rogue = await issueTestCertificate(otherCa, { commonName: 'rogue', deviceId: 'rogue' });
  // TLS 1.3 finishes the client side before the server checks the certificate: the refusal
  // then arrives as a close with an error rather than a failed connect.
  const outcome = await NgttSocket.connect(clientOptions(server.port, { cert: rogue.cert, key: rogue.key })).then(
    async (socket) => ((await once(socket, 'close')) as [Error | undefined])[0],
    (error: Error) => error,
  );
  t.ok(outcome instanceof Error, `refused: ${outcome?.message}`);
  t.equal(server.connections.length, 0, 'the server never accepted it');
});

t.test('an oversize frame from the server is a protocol error that closes the socket', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  const socket = await NgttSocket.connect(clientOptions(server.port, { maxFrameLength: 1024 }));
  const peer = await server.nextConnection();
  let frames = 0;
  socket.on('frame', () => frames++);
  const header = Buffer.alloc(8);
  header.writeUInt32BE(2048, 0);
  header.writeUInt16BE(FrameType.ORDER, 6);
  peer.write(header);
  const [error] = (await once(socket, 'close')) as [Error];
  t.ok(error instanceof ProtocolError);
  t.equal((error as ProtocolError).code, 'FRAME_TOO_LARGE');
  t.equal(frames, 0);
  t.equal(socket.closed, true);
});

t.test('backpressure: send reports false and drain() resolves once the peer reads', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  const socket = await NgttSocket.connect(clientOptions(server.port));
  t.teardown(() => socket.destroy());
  const peer = await server.nextConnection();
  peer.pause();
  const small = encodeFrame(0, FrameType.LOGS, Buffer.alloc(1024, 1));
  let acceptedSmall = 0;
  while (socket.send(small) && acceptedSmall < 1_000_000) acceptedSmall++;
  t.ok(acceptedSmall > 0 && acceptedSmall < 1_000_000, `send accepted ${acceptedSmall} KiB, then reported a full buffer`);
  // Keep queueing many MB: the frames are kept, and the answer stays "full".
  const big = encodeFrame(0, FrameType.LOGS, Buffer.alloc(1 << 20, 7));
  const accepted = Array.from({ length: 32 }, () => socket.send(big));
  t.notOk(accepted.includes(true), 'the buffer stays full while the peer does not read');
  const total = (acceptedSmall + 1) * small.length + 32 * big.length;
  t.equal(socket.needsDrain, true);
  let bytesAtServer = 0;
  peer.on('data', (c: Buffer) => (bytesAtServer += c.length));
  peer.resume();
  await socket.drain();
  t.equal(socket.needsDrain, false);
  await until(() => bytesAtServer === total, 'all bytes at the server', 20_000);
  t.pass(`server read ${bytesAtServer} bytes`);
});

t.test('the socket actor: frames count as sent once flushed; while the socket must drain they wait', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  const sent: number[] = [];
  const received: number[] = [];
  const parent = createActor(
    setup({ actors: { socket: socketActor({ connect: clientOptions(server.port) }) } }).createMachine({
      invoke: { id: 'socket', src: 'socket', input: { attempt: 1, connectTimeoutMs: 5000 } },
      on: {
        SEND: { actions: forwardTo('socket') },
        'SOCKET.SENT': { actions: ({ event }) => void sent.push(...event.frames.map((f: { tid: number }) => f.tid)) },
        'SOCKET.FRAMES': { actions: ({ event }) => void received.push(...event.frames.map((f: { tid: number }) => f.tid)) },
      },
    }),
  );
  parent.start();
  t.teardown(() => parent.stop());
  const peer = await server.nextConnection();
  peer.pause();
  await until(() => parent.getSnapshot().children.socket !== undefined, 'the socket actor');
  const payload = new Uint8Array(256 * 1024).fill(3);
  for (let tid = 1; tid <= 64; tid++) parent.send({ type: 'SEND', frame: { type: FrameType.DATA_STREAM, tid, encoded: payload } });
  await until(() => sent.length > 0, 'the first frames flushed');
  const flushedWhilePaused = sent.length;
  t.ok(flushedWhilePaused < 64, `${flushedWhilePaused} of 64 frames (16 MiB) flushed while the peer does not read: the rest wait`);
  const frames = serverFrames(peer);
  peer.resume();
  await until(() => sent.length === 64, 'every frame flushed once the peer reads', 20_000);
  t.same(sent, Array.from({ length: 64 }, (_, i) => i + 1), 'in order, each once');
  await until(() => frames.length === 64, 'all frames at the server', 20_000);
  peer.write(Buffer.concat([1, 2, 3].map((tid) => encodeFrame(tid, FrameType.DATA_STREAM_CONFIRM))));
  await until(() => received.length === 3, 'the answers');
  t.same(received, [1, 2, 3]);
});

t.test('connect times out against a peer that never speaks TLS', async (t) => {
  const silent = net.createServer(() => {});
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => {
    silent.close();
  });
  const port = (silent.address() as net.AddressInfo).port;
  await t.rejects(NgttSocket.connect(clientOptions(port, { connectTimeoutMs: 150 })), /timed out/);
});

t.test('a destroyed peer surfaces as close; a throwing listener closes the connection', async (t) => {
  const server = await startServer();
  t.teardown(server.close);
  const socket = await NgttSocket.connect(clientOptions(server.port));
  const peer = await server.nextConnection();
  socket.on('frame', () => {
    throw new Error('listener bug');
  });
  peer.write(encodeFrame(1, FrameType.DATA_STREAM_CONFIRM));
  const [error] = (await once(socket, 'close')) as [Error];
  t.match(error?.message, /listener bug/);
});
