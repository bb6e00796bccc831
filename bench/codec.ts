/**
 * MiniJSON against JSON and msgpackr on traffic-like documents: ops/s for encode and decode,
 * and bytes per document. `npm run bench:codec`; figures go to bench/results/codec.json.
 * Not a test: it asserts nothing, it measures.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { decode, encode } from '../src/minijson/index.js';
import { logBatch, orderList, pathpointBatch } from './corpus.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const MS_PER_ROUND = Number(process.env.BENCH_MS ?? 300);
const packr = new Packr({ useRecords: false });

interface Codec {
  name: string;
  encode(v: unknown): Uint8Array | string;
  decode(b: any): unknown;
  size(b: Uint8Array | string): number;
}

const codecs: Codec[] = [
  { name: 'minijson', encode: (v) => encode(v), decode: (b) => decode(b), size: (b) => (b as Uint8Array).length },
  // JSON text as it goes on the wire: a string out of stringify, UTF-8 bytes counted.
  { name: 'JSON', encode: (v) => JSON.stringify(v), decode: (s) => JSON.parse(s), size: (s) => Buffer.byteLength(s as string) },
  { name: 'msgpackr', encode: (v) => packr.pack(v), decode: (b) => packr.unpack(b), size: (b) => (b as Uint8Array).length },
];

/**
 * Median ops/s of each function over ROUNDS rounds of MS_PER_ROUND, after a warm-up. The
 * functions take turns within each round, so a busy machine slows them alike and the ratios
 * between them stay fair.
 */
function interleavedOpsPerSecond(fns: (() => unknown)[]): number[] {
  for (const fn of fns) {
    const deadline = performance.now() + MS_PER_ROUND;
    while (performance.now() < deadline) fn(); // warm-up
  }
  const rates: number[][] = fns.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    fns.forEach((fn, k) => {
      let n = 0;
      const t0 = performance.now();
      let t = t0;
      while (t - t0 < MS_PER_ROUND) {
        for (let i = 0; i < 10; i++) fn();
        n += 10;
        t = performance.now();
      }
      rates[k].push((n * 1000) / (t - t0));
    });
  }
  return rates.map((rs) => rs.sort((a, b) => a - b)[Math.floor(rs.length / 2)]);
}

const corpus: Record<string, unknown> = {
  'pathpoints (1000 values)': pathpointBatch(1000),
  'orders (5 sections)': orderList(),
  'logs (100 records)': logBatch(),
};

type Row = { document: string; codec: string; encodeOps: number; decodeOps: number; bytes: number };
const rows: Row[] = [];
for (const [document, value] of Object.entries(corpus)) {
  const encoded = codecs.map((c) => c.encode(value));
  const encodeOps = interleavedOpsPerSecond(codecs.map((c) => () => c.encode(value)));
  const decodeOps = interleavedOpsPerSecond(codecs.map((c, k) => () => c.decode(encoded[k])));
  codecs.forEach((c, k) => rows.push({ document, codec: c.name, encodeOps: encodeOps[k], decodeOps: decodeOps[k], bytes: c.size(encoded[k]) }));
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
console.log(`MiniJSON codec benchmark — node ${process.version}, median of ${ROUNDS} × ${MS_PER_ROUND} ms\n`);
console.log('| document | codec | encode ops/s | decode ops/s | bytes |');
console.log('|---|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.document} | ${r.codec} | ${fmt(r.encodeOps)} | ${fmt(r.decodeOps)} | ${r.bytes} |`);

const ratios: Record<string, Record<string, number>> = {};
for (const document of Object.keys(corpus)) {
  const get = (codec: string) => rows.find((r) => r.document === document && r.codec === codec)!;
  const m = get('minijson');
  const j = get('JSON');
  const p = get('msgpackr');
  ratios[document] = {
    encodeVsJson: m.encodeOps / j.encodeOps,
    decodeVsJson: m.decodeOps / j.decodeOps,
    encodeVsMsgpackr: m.encodeOps / p.encodeOps,
    decodeVsMsgpackr: m.decodeOps / p.decodeOps,
    bytesVsJson: m.bytes / j.bytes,
    bytesVsMsgpackr: m.bytes / p.bytes,
  };
}
console.log('\n| document | encode ×JSON | decode ×JSON | encode ×msgpackr | decode ×msgpackr | bytes/JSON | bytes/msgpackr |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const [d, r] of Object.entries(ratios)) {
  console.log(`| ${d} | ${r.encodeVsJson.toFixed(2)} | ${r.decodeVsJson.toFixed(2)} | ${r.encodeVsMsgpackr.toFixed(2)} | ${r.decodeVsMsgpackr.toFixed(2)} | ${r.bytesVsJson.toFixed(2)} | ${r.bytesVsMsgpackr.toFixed(2)} |`);
}

const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'codec.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ node: process.version, date: new Date().toISOString(), rounds: ROUNDS, msPerRound: MS_PER_ROUND, rows, ratios }, null, 2) + '\n');
console.log(`\nwritten ${out}`);
