/**
 * The spool when its storage goes bad: damaged rows (garbage bytes, truncated values, values or
 * paths of the wrong type) are set aside as stored and reported once, and never block the rest;
 * a full disk makes push() reject clearly, loses nothing already stored, and passes once there
 * is room again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { decode, encode } from '../../src/minijson/index.js';
import type { PathpointValue } from '../../src/protocol/index.js';
import { MemorySpool, SpoolStorageError, SqliteSpool, frameSeries } from '../../src/device/spool.js';
import { fill, smallDisk, unfill } from '../helpers/disk.js';

const dir = mkdtempSync(join(tmpdir(), 'ngtt-spool-faults-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const v = (ts: number, value: PathpointValue[1]): PathpointValue => [ts, value];
const valuesOf = (series: { values: PathpointValue[] }[]) => series.flatMap((s) => s.values.map((x) => x[1]));

/** Damages rows the way a failing disk or a careless hand would, through a second connection. */
function damage(file: string, sql: string[]) {
  const db = new Database(file);
  for (const statement of sql) db.prepare(statement).run();
  db.close();
}

t.test('frameSeries writes what encode() writes, for short and long lists', async (t) => {
  for (const n of [0, 1, 15, 16, 255, 256, 70_000]) {
    const values = Array.from({ length: n }, (_, i) => v(1_700_000_000_000 + i, i % 3 ? i : `s${i}`));
    const series = [{ path: 'W1', values }, { path: 'é'.repeat(50), values: values.slice(0, 3) }];
    const framed = frameSeries(series.map((s) => [s.path, s.values.map((x) => encode(x))]));
    t.same(Buffer.from(framed), Buffer.from(encode(series)), `${n} values`);
  }
});

t.test('sqlite: damaged rows before a restart are set aside once; the rest is sent', async (t) => {
  const file = join(dir, 'before-restart.db');
  const first = SqliteSpool.open(file, { batch: { maxValues: 4 } });
  await first.push({ path: 'W1', values: [1, 2, 3, 4].map((i) => v(i, i)) });
  const formed = first.takeBatch()!; // rows 1-4, in flight when the device stopped
  await first.push({ path: 'W2', values: [5, 6, 7, 8, 9, 10].map((i) => v(i, i)) });
  await first.close();
  damage(file, [
    "UPDATE spool_values SET value = X'FFFFFFFF' WHERE seq = 2", // garbage bytes, in the batch
    'UPDATE spool_values SET value = substr(value, 1, 3) WHERE seq = 5', // truncated
    "UPDATE spool_values SET value = 'not bytes' WHERE seq = 6", // wrong type: text
    'UPDATE spool_values SET value = 42 WHERE seq = 7', // wrong type: integer
    "UPDATE spool_values SET path = X'0001' WHERE seq = 8", // path of the wrong type
  ]);

  const reports: string[] = [];
  const spool = SqliteSpool.open(file, { batch: { maxValues: 4 }, onUnreadable: (n, reason) => void reports.push(`${n}: ${reason}`) });
  t.teardown(() => spool.close());
  t.same([spool.pendingValues, spool.batchedValues], [6, 4], 'opening does not read the values');
  const { batches } = spool.nextBatches({ max: 8, exclude: [], flush: true });
  t.same(batches.map((b) => b.id), [formed.id, formed.id + 1]);
  t.same(valuesOf(decode(batches[0].encoded) as never), [1, 3, 4], 'the batch goes out without its damaged row');
  t.same(valuesOf(decode(batches[1].encoded) as never), [9, 10], 'and the pending values that are sound');
  t.equal(reports.length, 2, 'reported once per find');
  t.match(reports[0], /^1: 1 unreadable spool row \(batch \d+\) set aside: value is not MiniJSON/);
  t.match(reports[1], /^4: 4 unreadable spool rows \(pending\) set aside/);
  t.same(
    spool.unreadable().map((r) => [r.seq, r.reason.split(':')[0]]).sort((a, b) => Number(a[0]) - Number(b[0])),
    [
      [2, 'value is not MiniJSON'],
      [5, 'value is not MiniJSON'],
      [6, 'value is string, not MiniJSON bytes'],
      [7, 'value is number, not MiniJSON bytes'],
      [8, 'path is bytes, not text'],
    ],
  );
  const kept = spool.unreadable().find((r) => r.seq === 6)!;
  t.equal(kept.value, 'not bytes', 'kept as it was stored');
  t.same(Buffer.from(spool.unreadable().find((r) => r.seq === 2)!.value as Buffer), Buffer.from([0xff, 0xff, 0xff, 0xff]));
  t.equal(spool.unreadableRows, 5);

  t.same(spool.nextBatches({ max: 8, exclude: [], flush: true }).batches.map((b) => b.id), batches.map((b) => b.id), 'handed out again, nothing new to report');
  t.equal(reports.length, 2);
  t.same(spool.settle(batches.map((b) => ({ id: b.id, outcome: 'confirmed' as const }))).map((s) => s.values), [3, 2]);
  t.same([spool.pendingValues, spool.batchedValues], [0, 0]);
});

t.test('sqlite: a row damaged during a run, in a formed batch: reject does not read it back', async (t) => {
  const file = join(dir, 'during-run.db');
  const spool = SqliteSpool.open(file);
  t.teardown(() => spool.close());
  await spool.push({ path: 'W1', values: [v(1, 1), v(2, 2)] });
  const batch = spool.takeBatch()!;
  damage(file, ["UPDATE spool_values SET value = X'07FF' WHERE seq = 1"]);
  // The old spool re-read and re-decoded the rows to keep a refused batch, threw, and bricked the device.
  t.equal(spool.reject(batch.id, 'refused'), true);
  t.same(spool.rejected()[0].series, [{ path: 'W1', values: [v(1, 1), v(2, 2)] }], 'kept with the content it was sent with');

  // A batch not in memory any more (formed long ago / before a restart) is framed from the raw rows.
  await spool.push({ path: 'W2', values: [v(3, 3), v(4, 4)] });
  const second = SqliteSpool.open(file);
  t.teardown(() => second.close());
  const b = second.takeBatch()!;
  damage(file, [`UPDATE spool_values SET value = X'07FF' WHERE seq = (SELECT min(seq) FROM spool_values WHERE batch_id = ${b.id})`]);
  const third = SqliteSpool.open(file);
  t.teardown(() => third.close());
  t.equal(third.reject(b.id, 'refused'), true);
  const aside = third.rejected()[0];
  t.equal(aside.id, b.id);
  t.same(aside.series, [], 'the damaged payload is kept as bytes; listing it does not throw');
  t.ok(aside.payload.length > 0);
});

t.test('memory: the same checks', async (t) => {
  const reports: string[] = [];
  const spool = new MemorySpool({ onUnreadable: (_, reason) => void reports.push(reason) });
  await spool.push({ path: 'W1', values: [v(1, 1), v(2, 2), v(3, 3)] });
  spool.corrupt(2, { encoded: new Uint8Array([0xff]) });
  const { batches } = spool.nextBatches({ max: 8, exclude: [], flush: true });
  t.same(valuesOf(decode(batches[0].encoded) as never), [1, 3]);
  t.equal(reports.length, 1);
  t.equal(spool.unreadable()[0].seq, 2);
});

const disk = smallDisk(t, dir, 2048);

t.test('sqlite on a full disk: push rejects clearly, stored values stay, and it works again when there is room', { skip: disk.skip }, async (t) => {
  const mount = disk.mount!;
  const spool = SqliteSpool.open(join(mount, 'spool.db'));
  t.teardown(() => spool.close());
  await spool.push({ path: 'W1', values: Array.from({ length: 100 }, (_, i) => v(i, i)) });
  const batch = spool.takeBatch({ maxValues: 50 })!;
  fill(mount);

  const big = Array.from({ length: 5000 }, (_, i) => v(1000 + i, `value ${i} `.repeat(10)));
  const failure = await spool.push({ path: 'W2', values: big }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(failure, SpoolStorageError, 'a clear error, not a crash');
  t.match((failure as SpoolStorageError).code, /^SQLITE_(FULL|IOERR)/);
  t.match((failure as Error).message, /^spool write failed: /);
  t.same([spool.pendingValues, spool.batchedValues], [50, 50], 'nothing of the refused push counted; nothing stored is lost');

  unfill(mount);
  await spool.push({ path: 'W2', values: big });
  t.equal(spool.pendingValues, 5050, 'room again: the same push goes through');
  t.equal(spool.confirm(batch.id), true);
  const all = spool.takeBatch({ maxValues: 1e9, maxBytes: 1 << 30 })!;
  t.equal(all.valueCount, 5050);
  t.same(all.series[0].values.slice(0, 2), [v(50, 50), v(51, 51)], 'the values stored before the disk filled are all there');
});
