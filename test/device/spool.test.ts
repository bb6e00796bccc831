import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { decode, encode } from '../../src/minijson/index.js';
import { PayloadError, type PathpointSeries, type PathpointValue } from '../../src/protocol/index.js';
import { openDeviceDatabase } from '../../src/device/database.js';
import { MemorySpool, SpoolFullError, SqliteSpool, type Spool, type SpoolOptions } from '../../src/device/spool.js';

const dir = mkdtempSync(join(tmpdir(), 'ngtt-spool-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let dbCount = 0;

const v = (ts: number, value: PathpointValue[1]): PathpointValue => [ts, value];

const stores: [string, (options?: SpoolOptions) => Spool][] = [
  ['memory', (options) => new MemorySpool(options)],
  ['sqlite', (options) => SqliteSpool.open(join(dir, `suite-${dbCount++}.db`), options)],
];

for (const [name, open] of stores) {
  t.test(`${name} spool`, async (t) => {
    t.test('push, take grouped by path, confirm', async (t) => {
      const spool = open();
      t.teardown(() => spool.close());
      await spool.push([
        { path: 'W1', values: [v(1, 10)] },
        { path: 'fTemp', values: [v(2, 21.5)] },
      ]);
      await spool.push({ path: 'W1', values: [v(3, 11), [false, 4, 'timeout']] });
      t.equal(spool.pendingValues, 4);
      const batch = spool.takeBatch()!;
      t.same(batch.series, [
        { path: 'W1', values: [v(1, 10), v(3, 11), [false, 4, 'timeout']] },
        { path: 'fTemp', values: [v(2, 21.5)] },
      ]);
      t.same(decode(batch.payload), batch.series, 'payload is the series as MiniJSON');
      t.equal(batch.valueCount, 4);
      t.same([spool.pendingValues, spool.batchedValues, spool.unconfirmedBatchCount], [0, 4, 1]);
      t.equal(spool.takeBatch(), undefined, 'nothing pending');
      t.same(spool.unconfirmedBatches().map((b) => b.id), [batch.id], 'nothing deleted before confirm');
      t.equal(spool.confirm(batch.id), true);
      t.equal(spool.confirm(batch.id), false, 'a second confirm finds nothing');
      t.same([spool.pendingValues, spool.batchedValues, spool.unconfirmedBatchCount], [0, 0, 0]);
      t.same(spool.unconfirmedBatches(), []);
    });

    t.test('a batch just formed is sent as formed; older ones are read back, same bytes', async (t) => {
      const spool = open();
      t.teardown(() => spool.close());
      const batches = [];
      for (let i = 0; i < 40; i++) {
        await spool.push({ path: `W${i % 3}`, values: [v(i, i)] });
        batches.push(spool.takeBatch()!);
      }
      const last = batches[39];
      t.equal(spool.batch(last.id), last, 'no second read, decode and encode for the batch about to be sent');
      for (const b of batches) t.same(Buffer.from(spool.batch(b.id)!.payload), Buffer.from(b.payload), `batch ${b.id} unchanged`);
      spool.confirm(last.id);
      t.equal(spool.batch(last.id), undefined, 'a confirmed batch is gone, from memory too');
    });

    t.test('values keep their types; malformed pushes are refused whole', async (t) => {
      const spool = open();
      t.teardown(() => spool.close());
      const values: PathpointValue[] = [v(1, 7), v(2, -3.25), v(3, 'on'), v(4, 2n ** 70n), v(5, 0.1), [false, 6, 'type']];
      await spool.push({ path: 'x', values });
      t.same(spool.takeBatch()!.series, [{ path: 'x', values }]);
      await t.rejects(spool.push([{ path: 'y', values: [[1, { no: 1 }]] }] as unknown as PathpointSeries[]), PayloadError);
      await t.rejects(spool.push([{ path: 'y', values: [v(1, 1)] }, { path: '', values: [] }]), PayloadError);
      t.equal(spool.pendingValues, 0);
    });

    t.test('batch limits: maxValues, maxBytes, oldest first', async (t) => {
      const spool = open();
      t.teardown(() => spool.close());
      for (let i = 0; i < 100; i++) await spool.push({ path: `p${i % 4}`, values: [v(1000 + i, 'x'.repeat(20))] });
      const a = spool.takeBatch({ maxValues: 10 })!;
      t.equal(a.valueCount, 10);
      t.same(a.series.flatMap((s) => s.values.map((x) => x[0])).sort(), Array.from({ length: 10 }, (_, i) => 1000 + i));
      const b = spool.takeBatch({ maxBytes: 300 })!;
      t.ok(b.payload.length <= 300, `payload ${b.payload.length} bytes`);
      t.ok(b.valueCount >= 5, `${b.valueCount} values fit in 300 bytes`);
      const c = spool.takeBatch({ maxBytes: 1 })!;
      t.equal(c.valueCount, 1, 'a batch holds at least one value');
      t.equal(spool.pendingValues, 100 - 10 - b.valueCount - 1);
      t.same(spool.unconfirmedBatches().map((x) => x.id), [a.id, b.id, c.id]);
      t.ok(a.id < b.id && b.id < c.id);
    });

    t.test('reject keeps the batch aside and never resends it', async (t) => {
      const spool = open({ now: () => 42 });
      t.teardown(() => spool.close());
      await spool.push({ path: 'W1', values: [v(1, 1), v(2, 2)] });
      const batch = spool.takeBatch()!;
      await spool.push({ path: 'W1', values: [v(3, 3)] });
      t.equal(spool.reject(batch.id, 'malformed'), true);
      t.equal(spool.reject(batch.id, 'again'), false);
      t.same(spool.unconfirmedBatches(), []);
      t.equal(spool.rejectedBatches, 1);
      t.match(spool.rejected(), [{ id: batch.id, reason: 'malformed', rejectedAt: 42, series: batch.series }]);
      t.same(spool.takeBatch()!.series, [{ path: 'W1', values: [v(3, 3)] }], 'only the new value is taken');
    });

    t.test('rejected batches are bounded', async (t) => {
      const spool = open({ maxRejected: 2 });
      t.teardown(() => spool.close());
      const ids: number[] = [];
      for (let i = 0; i < 4; i++) {
        await spool.push({ path: 'W1', values: [v(i, i)] });
        const id = spool.takeBatch()!.id;
        ids.push(id);
        spool.reject(id, `r${i}`);
      }
      t.equal(spool.rejectedBatches, 2);
      t.same(spool.rejected().map((r) => r.id), [ids[3], ids[2]], 'the newest are kept');
    });

    t.test('capacity: full spool refuses, waitForSpace resolves after confirm', async (t) => {
      const spool = open({ maxValues: 10 });
      t.teardown(() => spool.close());
      await spool.push({ path: 'W1', values: Array.from({ length: 8 }, (_, i) => v(i, i)) });
      t.equal(spool.isFull, false);
      await t.rejects(spool.push({ path: 'W1', values: [v(8, 8), v(9, 9), v(10, 10)] }), SpoolFullError);
      t.equal(spool.pendingValues, 8, 'nothing of the refused push was stored');
      await spool.push({ path: 'W1', values: [v(8, 8), v(9, 9)] });
      t.equal(spool.isFull, true);
      const batch = spool.takeBatch({ maxValues: 5 })!;
      t.equal(spool.isFull, true, 'values in flight still count');
      let resolved = false;
      const space = spool.waitForSpace(3).then(() => (resolved = true));
      await new Promise((r) => setImmediate(r));
      t.equal(resolved, false);
      spool.confirm(batch.id);
      await space;
      t.equal(spool.isFull, false);
      await t.rejects(spool.waitForSpace(11), RangeError);
    });

    t.test('20 000 values: single pushes and one bulk push, then one batch of all of them', async (t) => {
      // Speed is measured in bench/, not asserted here.
      const spool = open();
      t.teardown(() => spool.close());
      const pushes: Promise<void>[] = [];
      for (let i = 0; i < 10_000; i++) pushes.push(spool.push({ path: `W${i % 50}`, values: [v(1_700_000_000_000 + i, i)] }));
      await Promise.all(pushes);
      await spool.push({ path: 'f1', values: Array.from({ length: 10_000 }, (_, i) => v(i, i + 0.5)) });
      t.equal(spool.pendingValues, 20_000);
      const batch = spool.takeBatch({ maxValues: 20_000, maxBytes: 16 << 20 })!;
      t.equal(batch.valueCount, 20_000);
      t.equal(batch.series.length, 51);
      t.same(Buffer.from(batch.payload), Buffer.from(encode(batch.series)), 'framed from the stored bytes, same as encoding the series');
    });

    t.test('nextBatches: unconfirmed first, none excluded; new ones only when due (count, bytes, age, flush)', async (t) => {
      let now = 1_000_000;
      const spool = open({ now: () => now, batch: { maxValues: 3, maxBytes: 1000, maxAgeMs: 5000 } });
      t.teardown(() => spool.close());
      t.same(spool.nextBatches({ max: 8, exclude: [], flush: false }), { batches: [] }, 'nothing pending: no due time');
      await spool.push({ path: 'W1', values: [v(1, 1)] });
      t.same(spool.nextBatches({ max: 8, exclude: [], flush: false }), { batches: [], dueInMs: 5000 }, 'one value: due in maxAgeMs');
      now += 4000;
      await spool.push({ path: 'W1', values: [v(2, 2)] });
      t.same(spool.nextBatches({ max: 8, exclude: [], flush: false }).dueInMs, 1000, 'the age counts from the oldest value');
      now += 1000;
      const [a] = spool.nextBatches({ max: 8, exclude: [], flush: false }).batches;
      t.equal(a.values, 2, 'due by age');
      for (let i = 3; i <= 9; i++) await spool.push({ path: 'W1', values: [v(i, i)] });
      const full = spool.nextBatches({ max: 8, exclude: [a.id], flush: false });
      t.same(full.batches.map((b) => b.values), [3, 3], 'due by count: full batches only');
      t.equal(full.dueInMs, 5000, 'the rest waits');
      const again = spool.nextBatches({ max: 2, exclude: [], flush: false });
      t.same(again.batches.map((b) => b.id), [a.id, full.batches[0].id], 'unconfirmed, oldest first, at most max');
      t.same(Buffer.from(again.batches[0].encoded), Buffer.from(a.encoded), 'the same bytes again');
      const flushed = spool.nextBatches({ max: 8, exclude: [a.id, ...full.batches.map((b) => b.id)], flush: true });
      t.same(flushed.batches.map((b) => b.values), [1]);
      t.equal(flushed.dueInMs, undefined);
      await spool.push({ path: 'S1', values: [v(10, 'x'.repeat(600))] });
      await spool.push({ path: 'S1', values: [v(11, 'y'.repeat(600))] });
      t.equal(spool.nextBatches({ max: 8, exclude: spool.unconfirmedBatchIds(), flush: false }).batches.length, 1, 'due by bytes');
    });

    t.test('settle: confirmed deleted, rejected set aside, unknown ids count 0 values', async (t) => {
      const spool = open({ batch: { maxValues: 2 } });
      t.teardown(() => spool.close());
      await spool.push({ path: 'W1', values: [v(1, 1), v(2, 2), v(3, 3)] });
      const [a, b] = spool.nextBatches({ max: 8, exclude: [], flush: true }).batches;
      t.same(spool.settle([{ id: a.id, outcome: 'confirmed' }, { id: b.id, outcome: 'rejected', reason: 'bad' }, { id: 999, outcome: 'confirmed' }]), [
        { id: a.id, outcome: 'confirmed', values: 2 },
        { id: b.id, outcome: 'rejected', reason: 'bad', values: 1 },
        { id: 999, outcome: 'confirmed', values: 0 },
      ]);
      t.same([spool.pendingValues, spool.batchedValues, spool.rejectedBatches], [0, 0, 1]);
      t.same(spool.rejected()[0].series, [{ path: 'W1', values: [v(3, 3)] }]);
    });

    t.test('close rejects whoever waits for space', async (t) => {
      const spool = open({ maxValues: 1 });
      await spool.push({ path: 'W1', values: [v(1, 1)] });
      const waiting = spool.waitForSpace(1);
      await spool.close();
      await t.rejects(waiting, { name: 'SpoolClosedError' });
      await t.rejects(spool.push({ path: 'W1', values: [v(2, 2)] }), { name: 'SpoolClosedError' });
    });
  });
}

t.test('sqlite: everything survives a reopen; batch ids are not reused', async (t) => {
  const file = join(dir, 'reopen.db');
  const first = SqliteSpool.open(file);
  await first.push({ path: 'W1', values: [v(1, 1), v(2, 2), v(3, 3)] });
  const confirmed = first.takeBatch({ maxValues: 1 })!;
  first.confirm(confirmed.id);
  const inFlight = first.takeBatch({ maxValues: 1 })!;
  const rejected = first.takeBatch({ maxValues: 1 })!;
  first.reject(rejected.id, 'bad');
  await first.push({ path: 'W2', values: [v(4, 4)] });
  await first.close();

  const second = SqliteSpool.open(file);
  t.teardown(() => second.close());
  t.same([second.pendingValues, second.batchedValues, second.unconfirmedBatchCount, second.rejectedBatches], [1, 1, 1, 1]);
  const again = second.unconfirmedBatches();
  t.same(again.map((b) => b.id), [inFlight.id]);
  t.same(Buffer.from(again[0].payload), Buffer.from(inFlight.payload), 'resent with the same content');
  t.equal(second.rejected()[0].reason, 'bad');
  const next = second.takeBatch()!;
  t.ok(next.id > rejected.id, 'a new batch gets a new id');
  t.same(next.series, [{ path: 'W2', values: [v(4, 4)] }]);
});

t.test('sqlite: shares a database opened by the caller and leaves it open', async (t) => {
  const db = openDeviceDatabase(join(dir, 'shared.db'));
  t.teardown(() => db.close());
  const spool = SqliteSpool.open(db);
  await spool.push({ path: 'W1', values: [v(1, 1)] });
  await spool.close();
  t.equal(db.open, true);
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  t.equal(db.pragma('synchronous', { simple: true }), 2, 'synchronous=FULL');
  t.equal(SqliteSpool.open(db).pendingValues, 1);
});

t.test('sqlite: nothing push() acknowledged is lost when the process is killed', async (t) => {
  const file = join(dir, 'crash.db');
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'spool-child.ts'), file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let lastAcked = -1;
  let batch: { id: number; count: number } | undefined;
  for await (const line of createInterface({ input: child.stdout! })) {
    const [kind, a, b] = line.split(' ');
    if (kind === 'acked') lastAcked = Number(b);
    if (kind === 'batch') batch = { id: Number(a), count: Number(b) };
    if (lastAcked >= 500) {
      child.kill('SIGKILL');
      break;
    }
  }
  await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
  t.equal(child.signalCode, 'SIGKILL');

  const spool = SqliteSpool.open(file);
  t.teardown(() => spool.close());
  const unconfirmed = spool.unconfirmedBatches();
  t.same(unconfirmed.map((x) => [x.id, x.valueCount]), [[batch!.id, batch!.count]], 'the batch formed before the kill is still in flight');
  const all = [...unconfirmed, spool.takeBatch({ maxValues: 1e9, maxBytes: 1 << 30 })!];
  const stored = new Set(all.flatMap((x) => x.series.flatMap((s) => s.values.map((value) => value[1] as number))));
  const missing = Array.from({ length: lastAcked + 1 }, (_, i) => i).filter((i) => !stored.has(i));
  t.same(missing, [], `all ${lastAcked + 1} acknowledged values are there (${stored.size} stored)`);
});
