/**
 * A DATA_STREAM whose CONFIRM was lost is sent again by the device (spec §8) with the same
 * content: the store keeps it once. The cut test (cuts.test.ts) found batches stored up to four
 * times before the stores deduplicated by digest.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { encode } from '../../src/minijson/index.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import { createMemoryStore, openSqliteStore } from '../../src/server/store/index.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';

const tmp = await mkdtemp(join(tmpdir(), 'ngtt-dedupe-'));
t.teardown(() => rm(tmp, { recursive: true, force: true }));
const batch = (v: number) => [{ path: 'W1', values: [[1_700_000_000_000 + v, v] as [number, number]] }];
const logBatch = (v: number) => [{ service: 's', when: 1_700_000_000_000 + v, message: String(v), level: 20 }];
const logValues = async (store: ReturnType<typeof createMemoryStore>) => (await store.readLogs('d', { limit: 1000 })).map((r) => Number(r.message));
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

for (const [name, open] of [
  ['memory', () => createMemoryStore({ dedupeWindow: 100 })],
  ['sqlite', () => openSqliteStore(join(tmp, 'window.db'), { dedupeWindow: 100 })],
] as const) {
  t.test(`${name}: the dedupe window is bounded by count; a batch re-sent after it is stored again`, async (t) => {
    const store = open();
    // 300 distinct batches, in transactions of 7 as the upload pipeline groups them.
    // Log batches (one per data batch here) have a window of their own, the same size.
    const ingest = (vs: number[]) => store.ingest('d', { data: vs.map((v) => ({ series: batch(v) })), logs: vs.map(logBatch) });
    for (let v = 1; v <= 300; v += 7) await ingest([...Array(Math.min(7, 301 - v))].map((_, i) => v + i));
    await ingest([300, 201]);
    t.equal((await values(store)).length, 300, 'the newest 100 are recognised: nothing stored twice');
    t.equal((await logValues(store)).length, 300, 'log batches likewise');
    await ingest([150]);
    t.equal((await values(store)).filter((v) => v === 150).length, 2, 'a batch 150 batches old is past the window: stored again');
    t.equal((await logValues(store)).filter((v) => v === 150).length, 2, 'a log batch too');
    if (name === 'sqlite') {
      await store.close();
      const db = new Database(join(tmp, 'window.db'), { readonly: true });
      for (const table of ['data_digests', 'log_digests']) {
        const { n } = db.prepare(`SELECT count(*) AS n FROM ${table} WHERE device_id = 'd'`).get() as { n: number };
        t.ok(n >= 100 && n < 100 + 64, `${table} holds the window, not every batch (${n} of 301 rows)`);
      }
      db.close();
    } else {
      await store.close();
    }
  });
}

t.test('sqlite: a file from before the window (digests without seq) is upgraded and pruned', async (t) => {
  const file = join(tmp, 'old.db');
  const old = new Database(file);
  old.exec(`CREATE TABLE data_digests (device_id TEXT NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (device_id, digest)) WITHOUT ROWID`);
  const insert = old.prepare(`INSERT INTO data_digests (device_id, digest) VALUES ('d', ?)`);
  for (let i = 0; i < 500; i++) insert.run(Buffer.from(i.toString(16).padStart(64, '0'), 'hex'));
  old.close();
  const store = openSqliteStore(file, { dedupeWindow: 10 });
  for (let v = 1; v <= 64; v++) await store.ingest('d', { data: [{ series: batch(v) }] });
  await store.ingest('d', { data: [{ series: batch(64) }] });
  t.equal((await values(store)).length, 64, 'new batches deduplicated as before');
  await store.close();
  const db = new Database(file, { readonly: true });
  t.equal((db.prepare(`SELECT count(*) AS n FROM data_digests`).get() as { n: number }).n, 10, 'the old digests were pruned with the rest');
  db.close();
});

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
