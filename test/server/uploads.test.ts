import t from 'tap';
import { decode, encode } from '../../src/minijson/index.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();

t.test('DATA_STREAM: confirmed with the same tid after storing; malformed rejected with a reason', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const device = await server.connect('dev-d');
  t.teardown(() => device.destroy());

  const batch = [{ path: 'W1', values: [[1_700_000_000_000, 21.5], [false, 1_700_000_001_000, 'timeout']] }];
  device.send(17, FrameType.DATA_STREAM, batch);
  const confirm = await device.takeType(FrameType.DATA_STREAM_CONFIRM);
  t.equal(confirm.tid, 17);
  t.equal(confirm.payload.length, 0);
  t.same((await server.store.readData('dev-d')).map(({ receivedAt, ...s }) => s), batch, 'stored before the CONFIRM');

  device.send(18, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 2, 3]] }]);
  const reject = await device.takeType(FrameType.DATA_STREAM_REJECT);
  t.equal(reject.tid, 18);
  t.match(decode(reject.payload), { reason: /values\[0\]/ });

  device.sendRaw(encodeFrame(19, FrameType.DATA_STREAM, Buffer.from([0xff, 0xfe])));
  const undecodable = await device.takeType(FrameType.DATA_STREAM_REJECT);
  t.equal(undecodable.tid, 19);
  t.match(decode(undecodable.payload), { reason: /./ });

  await device.ping();
  t.equal(device.isClosed, false, 'rejects do not cost the connection');
  t.equal((await server.store.readData('dev-d')).length, 1, 'nothing of the rejected batches stored');
  t.match(server.counters('dev-d'), { dataBatchesConfirmed: 1, dataBatchesRejected: 2 });
});

t.test('DATA_STREAM: many in flight are answered in order and batched into few transactions', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  let ingestCalls = 0;
  const ingest = server.store.ingest.bind(server.store);
  server.store.ingest = async (...args) => {
    ingestCalls++;
    return ingest(...args);
  };
  const device = await server.connect('dev-p');
  t.teardown(() => device.destroy());

  const n = 500;
  const frames = [];
  for (let tid = 1; tid <= n; tid++) {
    const payload = tid % 100 === 0 ? [{ path: '', values: [] }] : [{ path: 'W1', values: [[tid, tid * 1.5]] }];
    frames.push(encodeFrame(tid, FrameType.DATA_STREAM, encode(payload)));
  }
  device.sendRaw(Buffer.concat(frames)); // all in flight at once
  const replies = [];
  for (let i = 0; i < n; i++) replies.push(await device.take((f) => f.type === FrameType.DATA_STREAM_CONFIRM || f.type === FrameType.DATA_STREAM_REJECT));
  t.same(replies.map((f) => f.tid), Array.from({ length: n }, (_, i) => i + 1), 'replies in frame order');
  t.equal(replies.filter((f) => f.type === FrameType.DATA_STREAM_REJECT).length, 5);
  const stored = await server.store.readData('dev-p', { limit: 10_000 });
  t.equal(stored.length, n - 5);
  t.same(stored.slice(0, 2).map((s) => s.values), [[[1, 1.5]], [[2, 3]]], 'stored in order');
  t.ok(ingestCalls < n / 10, `batched: ${ingestCalls} store writes for ${n} frames`);
});

t.test('a failing store closes the connection without confirming', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  server.store.ingest = async () => {
    throw new Error('disk full');
  };
  const device = await server.connect('dev-f');
  device.send(5, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 1]] }]);
  await device.closed;
  t.equal(device.received.filter((f) => f.type === FrameType.DATA_STREAM_CONFIRM).length, 0);
  t.ok(server.logs.some((l) => /storing uploads failed/.test(String(l.msg))));
});

t.test('LOGS stored without reply; malformed LOGS dropped; PING, SYNC_BAOB and unknown frames', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const device = await server.connect('dev-l');
  t.teardown(() => device.destroy());

  const records = [
    { service: 'modbus', when: 1_700_000_000_000_000, message: 'started', level: 20 },
    { service: 'modbus', when: 1_700_000_000_000_001, message: { encoding: 'base64-gzip', content: 'H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==' }, level: 40, exception_text: 'Traceback' },
  ];
  device.send(0, FrameType.LOGS, records);
  device.send(0, FrameType.LOGS, [{ service: 'x' }]);
  device.send(3, FrameType.SYNC_BAOB_REQUEST, { firmware: 3 });
  const baob = await device.takeType(FrameType.SYNC_BAOB_RESPONSE, 3);
  t.same(decode(baob.payload), { download: [], upload: [], delete: ['firmware'] }, 'the server has no BAOBs: the device should delete its own');

  device.send(9, 99, { future: true }); // unknown frame type: logged, ignored
  device.send(9, FrameType.ORDER, []); // a server-only frame from a device: likewise
  await device.ping(0x1234);
  t.equal(device.isClosed, false);
  await until(async () => (await server.store.readLogs('dev-l')).length === 2, 'logs to be stored');
  t.same((await server.store.readLogs('dev-l')).map(({ receivedAt, ...r }) => r), records);
  t.equal(device.received.filter((f) => f.type !== FrameType.PING && f.type !== FrameType.SYNC_BAOB_RESPONSE).length, 0, 'LOGS get no reply');
  t.match(server.counters('dev-l'), { logRecords: 2, logBatchesDropped: 1, pings: 1 });
  t.ok(server.logs.some((l) => l.msg === 'unknown frame type' && l.type === 99));
});

t.test('a PING is echoed only after the LOGS before it are stored: the echo is their receipt', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const ingest = server.store.ingest.bind(server.store);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let ingests = 0;
  server.store.ingest = async (...args) => {
    ingests++;
    await gate;
    return ingest(...args);
  };
  const device = await server.connect('dev-r');
  t.teardown(() => device.destroy());

  const records = [{ service: 's', when: 1_700_000_000_000_000, message: 'before the receipt', level: 20 }];
  device.send(0, FrameType.LOGS, records);
  device.send(0x7ffd, FrameType.PING);
  await until(() => ingests === 1, 'the LOGS to be stored');
  device.send(7, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 1]] }]); // queued behind, answered after the echo
  // A BAOB sync is answered outside the upload queue: had the PING been echoed at once, the echo would be here first.
  device.send(3, FrameType.SYNC_BAOB_REQUEST, {});
  await device.takeType(FrameType.SYNC_BAOB_RESPONSE, 3);
  t.notOk(
    device.received.some((f) => f.type === FrameType.PING),
    'no echo while the LOGS before it are being stored',
  );
  open();
  const echo = await device.takeType(FrameType.PING, 0x7ffd);
  t.equal(echo.payload.length, 0);
  t.same((await server.store.readLogs('dev-r')).map(({ receivedAt, ...r }) => r), records, 'stored when the echo came');
  await device.takeType(FrameType.DATA_STREAM_CONFIRM, 7);
  t.same(
    device.received.filter((f) => f.type !== FrameType.SYNC_BAOB_RESPONSE).map((f) => f.type),
    [FrameType.PING, FrameType.DATA_STREAM_CONFIRM],
    'answers in frame order',
  );
});

t.test('a PING behind LOGS whose store failed is never echoed: the device keeps the batch', async (t) => {
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  server.store.ingest = async () => {
    throw new Error('disk full');
  };
  const device = await server.connect('dev-n');
  device.send(0, FrameType.LOGS, [{ service: 's', when: 1, message: 'm', level: 20 }]);
  device.send(0x7ffd, FrameType.PING);
  await device.closed;
  t.equal(device.received.filter((f) => f.type === FrameType.PING).length, 0, 'no receipt');
});
