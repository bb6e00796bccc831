/**
 * The "SQLite store only" ceiling of bench/throughput.ts, run as a child process of its own (so
 * it shares no event loop or heap with the device or the server): a fresh SQLite store
 * (synchronous = FULL, as shipped) takes distinct batches through store.ingest, `group` per
 * transaction, as the upload pipeline does with what queued up meanwhile. The batches are made
 * and encoded before the clock starts (a pool of distinct payloads), so only storing is timed.
 * At the end the store must hold one row per batch ingested, else the result is refused.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { encode } from '../../src/minijson/index.js';
import { openSqliteStore, type DataBatch } from '../../src/server/store/index.js';
import { BENCH_DIR, now } from './common.js';
import { DistinctBatches } from './uploads.js';

export interface CeilingRequest {
  values: number;
  group: number;
  seconds: number;
  /** Upper bound of values made up front (the pool); the run stops early if it runs out. */
  poolValues: number;
}
export interface CeilingResult {
  rate: number;
  batches: number;
  rows: number;
  seconds: number;
  poolExhausted: boolean;
  /** CPU (user + system) of this process while storing, per value. */
  cpuMicrosPerValue: number;
}

/** Runs one ceiling measurement in a fresh child process. */
export function measureStoreCeiling(request: CeilingRequest): Promise<CeilingResult> {
  return new Promise((resolve, reject) => {
    const child = fork(join(BENCH_DIR, 'lib', 'store-ceiling.ts'), ['--child'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', (m: CeilingResult | { error: string }) => ('error' in m ? reject(new Error(m.error)) : resolve(m)));
    child.once('exit', (code) => code !== 0 && reject(new Error(`store ceiling exited with ${code}`)));
    child.send(request);
  });
}

async function run(r: CeilingRequest): Promise<CeilingResult> {
  const batches = new DistinctBatches(r.values);
  const poolSize = Math.max(r.group, Math.min(400_000, Math.ceil(r.poolValues / r.values)));
  const pool: DataBatch[] = [];
  for (let i = 0; i < poolSize; i++) {
    const series = batches.next();
    // The store keeps the encoded bytes; `series` is only read when there are none.
    pool.push({ series: [], encoded: encode(series) });
  }
  const dir = mkdtempSync(join(tmpdir(), 'ngtt-bench-ceiling-'));
  const file = join(dir, 'ngtt.db');
  const store = openSqliteStore(file);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  while (now() - t0 < r.seconds * 1000 && next + r.group <= pool.length) {
    await store.ingest('ceiling-device', { data: pool.slice(next, next + r.group) });
    next += r.group;
  }
  const seconds = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await store.close();
  const db = new Database(file, { readonly: true });
  const rows = (db.prepare('SELECT count(*) AS n FROM data_batches').get() as { n: number }).n;
  db.close();
  rmSync(dir, { recursive: true, force: true });
  if (rows !== next) throw new Error(`the store holds ${rows} batches, ${next} were ingested: it did not store every one`);
  return { rate: (next * r.values) / seconds, batches: next, rows, seconds, poolExhausted: next + r.group > pool.length, cpuMicrosPerValue: (cpu.user + cpu.system) / (next * r.values) };
}

if (process.argv.includes('--child')) {
  process.once('message', (r: CeilingRequest) =>
    void run(r).then(
      (result) => process.send!(result, () => process.exit(0)),
      (e: Error) => process.send!({ error: e.message }, () => process.exit(1)),
    ),
  );
}
