/**
 * A/B of the NGTT server of two checkouts, in one run, for a change whose cost must be measured
 * on a busy machine: each side's bench backend (bench/lib/backend.ts of that checkout: server on
 * SQLite, synchronous = FULL) runs as its own child process, this checkout's NgttConnection
 * talks to both, and the sides take turns inside every round (order swapped each round), so the
 * machine's load hits both alike; the ratio B/A is taken per round and its median reported.
 * Upload: values/s confirmed, batches of 1, 100, 1 000 values (AB_BATCHES), every batch distinct,
 * a window of ≈ 1 MiB in flight (as bench/throughput.ts). Order latency: one order at a time, blocks of 50 alternating.
 *
 *   git -C . archive main | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 *   npx tsx bench/ab-server.ts /tmp/base "$PWD"            # AB_ROUNDS (8), AB_SECONDS (1), AB_ORDERS (200)
 *   AB_NO_ALPN=1 npx tsx bench/ab-server.ts /tmp/base "$PWD"  # the device offers no ALPN, like the original client
 *
 * Both checkouts need this file's imports (bench/lib/backend-client.ts with Backend.start).
 */
import { syncBuiltinESMExports } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import tls from 'node:tls';
import { NgttConnection } from '../src/device/index.js';
import { distribution, makePki, median, now } from './lib/common.js';
import { DistinctBatches, keepInFlight, keepInFlightCounted } from './lib/uploads.js';

const [dirA, dirB] = process.argv.slice(2);
if (!dirA || !dirB) {
  console.error('usage: npx tsx bench/ab-server.ts <checkout A> <checkout B>');
  process.exit(2);
}
if (process.env.AB_NO_ALPN) {
  // A device that offers no ALPN, like the original client: the server gives each frame its own record.
  const connect = tls.connect;
  (tls as { connect: unknown }).connect = (options: tls.ConnectionOptions) => connect({ ...options, ALPNProtocols: undefined });
  syncBuiltinESMExports();
}
const ROUNDS = Number(process.env.AB_ROUNDS ?? 8);
const SECONDS = Number(process.env.AB_SECONDS ?? 1);
const ORDERS = Number(process.env.AB_ORDERS ?? 200);
const pki = await makePki(['ab-dev']);
const tlsOf = { ca: pki.ca.cert, cert: pki.devices['ab-dev'].cert, key: pki.devices['ab-dev'].key };

type BackendT = { ports: { ngttPort: number }; stats(): Promise<{ cpuUser: number; cpuSystem: number }>; enqueue(seq: number, d: string, via: 'ngtt'): Promise<{ id: string; t0: number }>; settled(id: string): Promise<void>; settledAt: Map<string, number>; close(): Promise<void> };
const load = async (dir: string): Promise<BackendT> => (await import(pathToFileURL(resolve(dir, 'bench/lib/backend-client.ts')).href)).Backend.start(pki, null);
const sides = { A: await load(dirA), B: await load(dirB) };

const conns = {
  A: await NgttConnection.connect({ host: '127.0.0.1', port: sides.A.ports.ngttPort, ...tlsOf, wantOrders: false }),
  B: await NgttConnection.connect({ host: '127.0.0.1', port: sides.B.ports.ngttPort, ...tlsOf, wantOrders: false }),
};
console.log(`A = ${dirA}\nB = ${dirB}\n${ROUNDS} rounds × ${SECONDS} s per side, sides alternate inside each round`);
for (const values of (process.env.AB_BATCHES ?? '1,100,1000').split(',').map(Number)) {
  const batches = new DistinctBatches(values); // one sequence for both sides: no batch repeats
  const window = Math.max(8, Math.min(256, Math.ceil((1 << 20) / JSON.stringify(batches.next()).length)));
  for (const k of ['A', 'B'] as const) await keepInFlight(() => conns[k].syncPathpoints(batches.next()), window, values, 0.3); // warm-up
  const rates = { A: [] as number[], B: [] as number[] };
  // Server CPU per value (µs): steadier than wall-clock rates when the machine is shared.
  const cpu = { A: [] as number[], B: [] as number[] };
  const ratios: number[] = [];
  const cpuRatios: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const);
    const round: Record<string, number> = {};
    const cpuRound: Record<string, number> = {};
    for (const k of order) {
      const before = await sides[k].stats();
      const { rate, completed } = await keepInFlightCounted(() => conns[k].syncPathpoints(batches.next()), window, values, SECONDS);
      const after = await sides[k].stats();
      round[k] = rate;
      cpuRound[k] = ((after.cpuUser + after.cpuSystem - before.cpuUser - before.cpuSystem) * 1000) / (completed * values);
    }
    rates.A.push(round.A);
    rates.B.push(round.B);
    cpu.A.push(cpuRound.A);
    cpu.B.push(cpuRound.B);
    ratios.push(round.B / round.A);
    cpuRatios.push(cpuRound.B / cpuRound.A);
  }
  console.log(`upload batch ${values}: A ${Math.round(median(rates.A))}/s, B ${Math.round(median(rates.B))}/s, B/A median ${median(ratios).toFixed(3)} (per-round ${ratios.map((x) => x.toFixed(2)).join(' ')})`);
  console.log(`  server CPU per value: A ${median(cpu.A).toFixed(3)} µs, B ${median(cpu.B).toFixed(3)} µs, B/A median ${median(cpuRatios).toFixed(3)} (per-round ${cpuRatios.map((x) => x.toFixed(2)).join(' ')})`);
}
for (const c of Object.values(conns)) await c.close();

// Order latency: one order at a time, blocks of 50 alternating between the sides.
const handled = new Map<string, number>();
const waiters = new Map<string, () => void>();
const dev = { A: await NgttConnection.connect({ host: '127.0.0.1', port: sides.A.ports.ngttPort, ...tlsOf }), B: await NgttConnection.connect({ host: '127.0.0.1', port: sides.B.ports.ngttPort, ...tlsOf }) };
for (const d of Object.values(dev))
  d.onOrder((o) => {
    handled.set(o.id!, now());
    waiters.get(o.id!)?.();
    o.ack();
  });
const samples = { A: [] as number[], B: [] as number[] };
let seq = 0;
const one = async (k: 'A' | 'B') => {
  const { id, t0 } = await sides[k].enqueue(seq++, 'ab-dev', 'ngtt');
  if (!handled.has(id)) await new Promise<void>((r) => waiters.set(id, r));
  await sides[k].settled(id);
  return handled.get(id)! - t0;
};
for (let i = 0; i < 20; i++) for (const k of ['A', 'B'] as const) await one(k);
for (let block = 0; block < ORDERS / 50; block++) for (const k of block % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) for (let i = 0; i < 50; i++) samples[k].push(await one(k));
for (const k of ['A', 'B'] as const) {
  const d = distribution(samples[k]);
  console.log(`order latency ${k} (handler): p50 ${d.p50.toFixed(2)} p99 ${d.p99.toFixed(2)} max ${d.max.toFixed(2)} ms (n=${d.n})`);
}
for (const d of Object.values(dev)) await d.close();
for (const s of Object.values(sides)) await s.close();
