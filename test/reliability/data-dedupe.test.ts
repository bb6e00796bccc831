/**
 * A DATA_STREAM whose CONFIRM was lost is sent again by the device (spec §8) with the same
 * content: the store keeps it once. The cut test (cuts.test.ts) found batches stored up to four
 * times before the stores deduplicated by digest.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { encode } from '../../src/minijson/index.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import { createMemoryStore, openSqliteStore } from '../../src/server/store/index.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';

const tmp = await mkdtemp(join(tmpdir(), 'ngtt-dedupe-'));
t.teardown(() => rm(tmp, { recursive: true, force: true }));
const batch = (v: number) => [{ path: 'W1', values: [[1_700_000_000_000 + v, v] as [number, number]] }];
const values = async (store: ReturnType<typeof createMemoryStore>) => (await store.readData('d', { limit: 1000 })).flatMap((s) => s.values.map((v) => v[1]));

for (const [name, open] of [
  ['memory', () => createMemoryStore()],
  ['sqlite', () => openSqliteStore(join(tmp, 'dedupe.db'))],
] as const) {
  t.test(`${name}: a batch stored again is kept once, per device`, async (t) => {
    const store = open();
    await store.ingest('d', { data: [{ series: batch(1), encoded: encode(batch(1)) }, { series: batch(1) }] }); // in one transaction
    await store.ingest('d', { data: [{ series: batch(1) }, { series: batch(2) }] });
    await store.ingest('other', { data: [{ series: batch(1) }] });
    t.same(await values(store), [1, 2]);
    t.same((await store.readData('other')).length, 1, 'another device with the same content is not affected');
    await store.close();
    if (name === 'sqlite') {
      const again = open();
      await again.ingest('d', { data: [{ series: batch(2) }, { series: batch(3) }] });
      t.same(await values(again), [1, 2, 3], 'remembered across a restart');
      await again.close();
    }
  });
}

t.test('NGTT: a DATA_STREAM re-sent on a new connection is confirmed and stored once', async (t) => {
  const pki = await makePki();
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const first = await server.connect('dev-d');
  first.send(1, FrameType.DATA_STREAM, batch(7));
  await first.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
  await first.destroy(); // as if the CONFIRM had been lost in the cut
  const second = await server.connect('dev-d');
  t.teardown(() => second.destroy());
  second.send(1, FrameType.DATA_STREAM, batch(7));
  await second.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
  t.same((await server.store.readData('dev-d')).flatMap((s) => s.values), [[1_700_000_000_007, 7]]);
});

t.test('a batch stored over NGTT and re-posted over HTTPS (fallback after a lost CONFIRM) is stored once', async (t) => {
  const pki = await makePki();
  const server = await startTestServer(pki);
  t.teardown(() => server.close());
  const device = await server.connect('dev-x');
  t.teardown(() => device.destroy());
  const payload = encode([{ path: 'W1', values: [[1_700_000_000_000, 1.5], [1_700_000_000_001, 'on'], [false, 1_700_000_000_002, 'timeout']] }]);
  device.sendRaw(encodeFrame(1, FrameType.DATA_STREAM, payload));
  await device.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
  const creds = await pki.device('dev-x');
  const status = await new Promise<number>((resolve, reject) =>
    https
      .request({ host: '127.0.0.1', port: server.httpsPort, method: 'POST', path: '/v1/device/pathpoints', servername: 'localhost', ca: pki.ca.cert, ...creds, headers: { 'content-type': 'application/minijson' }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
      .on('error', reject)
      .end(payload),
  );
  t.equal(status, 200, 'accepted (the device deletes the batch)');
  t.equal((await server.store.readData('dev-x')).length, 1, 'stored once');
});
