/**
 * MiniJSON against msgpackr and JSON on traffic-like documents: encode and decode rates, and
 * bytes per document. `npm run bench:codec`; the full run writes bench/results/codec.json.
 * Not a test: it asserts nothing, it measures.
 *
 * Each scenario runs in its own child process, so that what V8 learnt in one (type feedback,
 * inlining, deoptimisations) cannot help or hurt another:
 *   pathpoints         DATA_STREAM batches of 1 000 values (ms timestamps, ints, floats, errors)
 *   pathpoints-mixed   the same, after every codec has first encoded and decoded documents of
 *                      many other shapes (what a long-running device or server has seen)
 *   logs, logs-mixed   LOGS batches of 100 records (service, when in µs, message, level)
 *   orders             ORDER payloads of 5 sections
 * In every scenario each codec cycles through 16 distinct documents (different timestamps and
 * values), warms up, then the contenders take turns for ROUNDS rounds of MS_PER_ROUND each, in
 * an order rotated every round. A rate is operations per CPU-second of the process
 * (process.cpuUsage: a busy shared machine disturbs it less than wall-clock time; GC threads
 * count, as the codec causes their work); wall-clock rates are kept too. Ratios are taken round
 * by round between contenders that ran back to back, then the median (and range) of those.
 *
 * Env: BENCH_ROUNDS (9), BENCH_MS (250), BENCH_SCENARIOS (all, comma-separated). A run with
 * fewer or shorter rounds or fewer scenarios is narrowed: it writes bench/results/narrowed/
 * codec.json and leaves the published results alone.
 * One scenario alone, e.g. to profile it:
 *   node --cpu-prof --import tsx bench/codec.ts --scenario pathpoints-mixed
 */
import { fork } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { decode, encode } from '../src/minijson/index.js';
import { logBatch, orderList, pathpointBatch } from './corpus.js';
import { fmt, median, RESULTS_DIR, writeResult } from './lib/common.js';

const DEFAULT_ROUNDS = 9;
const DEFAULT_MS = 250;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? DEFAULT_ROUNDS);
const MS_PER_ROUND = Number(process.env.BENCH_MS ?? DEFAULT_MS);
const WARM_MS = 400;
const DISTINCT = 16;

const SCENARIOS = {
  pathpoints: { document: 'pathpoints (1000 values)', mixed: false },
  'pathpoints-mixed': { document: 'pathpoints (1000 values), after mixed shapes', mixed: true },
  logs: { document: 'logs (100 records)', mixed: false },
  'logs-mixed': { document: 'logs (100 records), after mixed shapes', mixed: true },
  orders: { document: 'orders (5 sections)', mixed: false },
} as const;
type Scenario = keyof typeof SCENARIOS;
const ALL = Object.keys(SCENARIOS) as Scenario[];

const CODECS = ['minijson', 'msgpackr', 'JSON'] as const;
type CodecName = (typeof CODECS)[number];
interface Codec {
  encode(v: unknown): unknown;
  decode(b: any): unknown;
  size(b: any): number;
}

function codecs(): Record<CodecName, Codec> {
  // Plain maps, as MiniJSON writes them (records would be msgpackr's own structure-sharing format).
  const packr = new Packr({ useRecords: false });
  return {
    minijson: { encode: (v) => encode(v), decode: (b) => decode(b), size: (b) => b.length },
    msgpackr: { encode: (v) => packr.pack(v), decode: (b) => packr.unpack(b), size: (b) => b.length },
    // JSON text as stringify gives it and parse takes it: the UTF-8 conversion a wire would add is not counted.
    JSON: { encode: (v) => JSON.stringify(v), decode: (s) => JSON.parse(s), size: (s) => Buffer.byteLength(s) },
  };
}

function documents(scenario: Scenario): unknown[] {
  const seeds = Array.from({ length: DISTINCT }, (_, i) => i + 1);
  if (scenario.startsWith('pathpoints')) return seeds.map((s) => pathpointBatch(1000, s, 1_760_000_000_000 + s * 1_000_003));
  if (scenario.startsWith('logs')) return seeds.map((s) => logBatch(s, 1_760_000_000_000_000 + s * 1_000_000_007));
  return seeds.map((s) => orderList(s));
}

/**
 * Documents of many shapes, for the mixed scenarios' warm-up: orders, logs and pathpoints of
 * other sizes, and generated objects and lists mixing every type each codec can carry.
 */
function mixedShapes(): { all: unknown[]; json: unknown[] } {
  let seed = 7;
  const r = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const scalar = (depth: number): unknown => {
    switch (Math.floor(r() * 9)) {
      case 0: return Math.floor(r() * 1e6) - 5e5;
      case 1: return r() * 1e3;
      case 2: return 1_700_000_000_000 + Math.floor(r() * 1e11);
      case 3: return ['ok', 'timeout', 'zażółć', 'x'.repeat(Math.floor(r() * 300)), ''][Math.floor(r() * 5)];
      case 4: return r() < 0.5;
      case 5: return null;
      case 6: return depth > 3 ? 1 : Array.from({ length: Math.floor(r() * 6) }, () => scalar(depth + 1));
      case 7: return depth > 3 ? 'leaf' : shaped(depth + 1);
      default: return -r() * 1e300;
    }
  };
  const keys = ['id', 'name', 'type', 'value', 'when', 'path', 'reason', 'items', 'a', 'b', 'c', 'config', 'stale_after', 'advise'];
  const shaped = (depth: number): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    const n = 1 + Math.floor(r() * 12);
    for (let i = 0; i < n; i++) o[keys[Math.floor(r() * keys.length)] + (r() < 0.3 ? i : '')] = scalar(depth);
    return o;
  };
  const json = [
    ...Array.from({ length: 300 }, () => shaped(0)),
    ...Array.from({ length: 100 }, () => scalar(0)),
    orderList(99),
    logBatch(99),
    pathpointBatch(10, 98),
    pathpointBatch(100, 99),
    { reason: 'bad batch' },
    [[false, 1_760_000_000_000, 'timeout']],
  ];
  const binaryAndMaps = Array.from({ length: 50 }, (_, i) => ({
    blob: Buffer.alloc(i * 7, i),
    table: new Map<unknown, unknown>([[i, 'x'], ['k', [i, -i]]]),
    big: BigInt(i) * 12_345_678_901_234_567n,
  }));
  return { all: [...json, ...binaryAndMaps], json };
}

interface Sample {
  wallOps: number;
  cpuOps: number;
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Runs fn for about `ms` of wall-clock time; rates per wall second and per CPU second. */
function measure(fn: () => unknown, ms: number): Sample {
  let n = 0;
  const c0 = cpuMs();
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < 4; i++) fn();
    n += 4;
    t = performance.now();
  }
  const cpu = Math.max(cpuMs() - c0, 0.001);
  return { wallOps: (n * 1000) / (t - t0), cpuOps: (n * 1000) / cpu };
}

interface ScenarioResult {
  scenario: Scenario;
  bytes: Record<CodecName, number>;
  /** Per operation ("minijson encode"...), one sample per round. */
  samples: Record<string, Sample[]>;
}

function runScenario(scenario: Scenario): ScenarioResult {
  const all = codecs();
  const docs = documents(scenario);
  if (SCENARIOS[scenario].mixed) {
    const { all: shapes, json } = mixedShapes();
    for (let round = 0; round < 20; round++) {
      for (const name of CODECS) {
        for (const d of name === 'JSON' ? json : shapes) all[name].decode(all[name].encode(d));
      }
    }
  }
  const encoded = Object.fromEntries(CODECS.map((c) => [c, docs.map((d) => copy(all[c].encode(d)))])) as Record<CodecName, unknown[]>;
  const ops: [string, () => unknown][] = [];
  let k = 0;
  for (const name of CODECS) {
    const c = all[name];
    ops.push([`${name} encode`, () => c.encode(docs[k++ % DISTINCT])]);
    ops.push([`${name} decode`, () => c.decode(encoded[name][k++ % DISTINCT])]);
  }
  for (const [, fn] of ops) measure(fn, WARM_MS);
  const samples: Record<string, Sample[]> = Object.fromEntries(ops.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < ops.length; i++) {
      const [name, fn] = ops[(i + round) % ops.length];
      samples[name].push(measure(fn, MS_PER_ROUND));
    }
  }
  const bytes = Object.fromEntries(CODECS.map((c) => [c, Math.round(median(encoded[c].map((b) => all[c].size(b))))])) as Record<CodecName, number>;
  return { scenario, bytes, samples };
}

/** A result that stays valid and unshared (the codecs return views of their own buffers). */
const copy = (b: unknown) => (b instanceof Uint8Array ? Buffer.from(b) : b);

function runChild(scenario: Scenario): Promise<ScenarioResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--scenario', scenario, '--ipc'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', (m) => resolve(m as ScenarioResult));
    child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`scenario ${scenario} exited with ${code}`))));
  });
}

const range = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

async function main(): Promise<void> {
  const chosen = (process.env.BENCH_SCENARIOS ? process.env.BENCH_SCENARIOS.split(',') : ALL) as Scenario[];
  for (const s of chosen) if (!(s in SCENARIOS)) throw new Error(`unknown scenario ${s}; known: ${ALL.join(', ')}`);
  const narrowed = ROUNDS < DEFAULT_ROUNDS || MS_PER_ROUND < DEFAULT_MS || chosen.length < ALL.length;
  const loadBefore = loadavg();
  console.log(`MiniJSON codec benchmark: node ${process.version}, ${ROUNDS} rounds × ${MS_PER_ROUND} ms per contender, load ${loadBefore.map((l) => l.toFixed(1)).join(' ')}${narrowed ? ' (narrowed run)' : ''}`);

  const rows = [];
  const ratios: Record<string, Record<string, ReturnType<typeof range>>> = {};
  for (const scenario of chosen) {
    const { bytes, samples } = await runChild(scenario);
    const document = SCENARIOS[scenario].document;
    for (const codec of CODECS) {
      const e = samples[`${codec} encode`];
      const d = samples[`${codec} decode`];
      rows.push({
        document,
        scenario,
        codec,
        encodeOps: median(e.map((s) => s.cpuOps)),
        decodeOps: median(d.map((s) => s.cpuOps)),
        encodeOpsWall: median(e.map((s) => s.wallOps)),
        decodeOpsWall: median(d.map((s) => s.wallOps)),
        bytes: bytes[codec],
      });
    }
    const perRound = (a: string, b: string) => range(samples[a].map((s, i) => s.cpuOps / samples[b][i].cpuOps));
    ratios[document] = {
      encodeVsMsgpackr: perRound('minijson encode', 'msgpackr encode'),
      decodeVsMsgpackr: perRound('minijson decode', 'msgpackr decode'),
      encodeVsJson: perRound('minijson encode', 'JSON encode'),
      decodeVsJson: perRound('minijson decode', 'JSON decode'),
    };
    const r = ratios[document];
    console.log(
      `${document}: encode ×msgpackr ${fmt(r.encodeVsMsgpackr.median)} (${fmt(r.encodeVsMsgpackr.min)}–${fmt(r.encodeVsMsgpackr.max)}), decode ×msgpackr ${fmt(r.decodeVsMsgpackr.median)}, ` +
        `encode ×JSON ${fmt(r.encodeVsJson.median)}, decode ×JSON ${fmt(r.decodeVsJson.median)} (${fmt(r.decodeVsJson.min)}–${fmt(r.decodeVsJson.max)})`,
    );
  }

  console.log('\n| document | codec | encode ops/CPU-s | decode ops/CPU-s | encode ops/s (wall) | decode ops/s (wall) | bytes |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.document} | ${r.codec} | ${fmt(r.encodeOps)} | ${fmt(r.decodeOps)} | ${fmt(r.encodeOpsWall)} | ${fmt(r.decodeOpsWall)} | ${r.bytes} |`);

  const goal = (name: string, document: string, key: string, target: number) => {
    const v = ratios[document]?.[key];
    return v ? { goal: name, median: v.median, min: v.min, max: v.max, target, met: v.median >= target } : undefined;
  };
  const goals = [
    goal('pathpoints encode ≥ 1.0× msgpackr', SCENARIOS.pathpoints.document, 'encodeVsMsgpackr', 1),
    goal('pathpoints encode ≥ 1.0× msgpackr, after mixed shapes', SCENARIOS['pathpoints-mixed'].document, 'encodeVsMsgpackr', 1),
    goal('logs decode ≥ 1.0× JSON.parse', SCENARIOS.logs.document, 'decodeVsJson', 1),
    goal('logs decode ≥ 1.0× JSON.parse, after mixed shapes', SCENARIOS['logs-mixed'].document, 'decodeVsJson', 1),
  ].filter((g) => g !== undefined);
  const loadAfter = loadavg();
  const result = {
    node: process.version,
    date: new Date().toISOString(),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    load: { before: loadBefore, after: loadAfter },
    rounds: ROUNDS,
    msPerRound: MS_PER_ROUND,
    distinctDocuments: DISTINCT,
    rate: 'operations per CPU-second of the benchmark process (process.cpuUsage); *Wall fields: per wall-clock second',
    narrowed,
    rows,
    ratios,
    goals,
  };
  if (narrowed) mkdirSync(join(RESULTS_DIR, 'narrowed'), { recursive: true });
  const file = writeResult(narrowed ? 'narrowed/codec' : 'codec', result);
  console.log(`\nload average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(1)).join(' ')} after; written ${file}`);
}

const at = process.argv.indexOf('--scenario');
if (at >= 0) {
  const result = runScenario(process.argv[at + 1] as Scenario);
  if (process.argv.includes('--ipc')) process.send!(result, () => process.disconnect());
  else console.log(JSON.stringify(result.samples, null, 1));
} else {
  await main();
}
