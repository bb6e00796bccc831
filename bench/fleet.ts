/**
 * Fleet scale on one server (issue #6, scenario 3). For N = 100, 1 000, 2 000, 10 000
 * (BENCH_FLEET_STEPS): a fresh server process (bench/lib/backend.ts: reference server, SQLite
 * FULL) and a fleet process (bench/lib/fleet-client.ts: N light raw-frame devices, ECDSA P-256,
 * each its own certificate) opening connections at BENCH_FLEET_RATE per second (500). The fleet
 * idles BENCH_FLEET_IDLE_S seconds (10) with PINGs every 5 s, then the server enqueues one
 * order each to BENCH_FLEET_ORDERS devices (500, spread over the fleet) at BENCH_FLEET_ORDER_RATE
 * per second (50; the SQLite store pays about three fsyncs per order): order latency (enqueue → the
 * device has it), server RSS and CPU, handshake rate. Stops at the first N whose p99 is not
 * under 100 ms or where connections fail.
 *
 * Memory per idle mutual-TLS connection, side by side with mosquitto: at BENCH_FLEET_MEMORY_STEPS
 * (2 000, 10 000) the same fleet process, with the same certificates, also connects to a TLS
 * mosquitto started by the benchmark (require_certificate true, a free loopback port) as MQTT
 * clients that PING at the same interval; KiB per connection = (broker RSS after the idle time
 * − RSS before connecting) / connections, read from /proc, as for the NGTT server.
 * `npm run bench:fleet`; a run with other steps or shorter idle writes bench/results/narrowed/.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Backend } from './lib/backend-client.js';
import { BENCH_DIR, distribution, environment, fmt, makePki, mosquittoVersion, now, RESULTS_DIR, rssOf, sleep, startTlsMosquitto, writeResult, type Distribution } from './lib/common.js';
import { fleetDeviceId, type FleetEvent, type FleetRequest } from './lib/fleet-client.js';

const STEPS = (process.env.BENCH_FLEET_STEPS ?? '100,1000,2000,10000').split(',').map(Number);
const RATE = Number(process.env.BENCH_FLEET_RATE ?? 500);
const IDLE_S = Number(process.env.BENCH_FLEET_IDLE_S ?? 10);
const ORDER_RATE = Number(process.env.BENCH_FLEET_ORDER_RATE ?? 50);
/** Devices that get an order: spread evenly over the fleet (each order costs the store ~3 fsyncs). */
const ORDERS = Number(process.env.BENCH_FLEET_ORDERS ?? 500);
const MEMORY_STEPS = (process.env.BENCH_FLEET_MEMORY_STEPS ?? '2000,10000').split(',').map(Number);
const PING_MS = Number(process.env.BENCH_FLEET_PING_MS ?? 5000);
const P99_LIMIT_MS = 100;
const narrowed = ['BENCH_FLEET_STEPS', 'BENCH_FLEET_IDLE_S', 'BENCH_FLEET_ORDERS', 'BENCH_FLEET_MEMORY_STEPS', 'BENCH_FLEET_PING_MS'].some((k) => process.env[k] !== undefined);
const loadBefore = loadavg();

class Fleet {
  private readonly waiters = new Map<string, (e: FleetEvent) => void>();
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (e: FleetEvent) => {
      const w = this.waiters.get(e.type);
      this.waiters.delete(e.type);
      w?.(e);
    });
  }
  static start(): Fleet {
    return new Fleet(fork(join(BENCH_DIR, 'lib', 'fleet-client.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }
  next<T extends FleetEvent['type']>(type: T, send?: FleetRequest): Promise<Extract<FleetEvent, { type: T }>> {
    return new Promise((resolve) => {
      this.waiters.set(type, resolve as (e: FleetEvent) => void);
      if (send) this.child.send(send);
    });
  }
  async close() {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ type: 'close' } satisfies FleetRequest);
    await Promise.race([exited, sleep(5000)]);
    if (this.child.exitCode === null) this.child.kill();
  }
}

interface Step {
  devices: number;
  connected: number;
  failed: number;
  firstError?: string;
  certificatesMs: number;
  handshakesPerSecond: number;
  handshakeP99Ms: number;
  rssIdleMiB: number;
  rssAfterOrdersMiB: number;
  rssPerDeviceKiB: number;
  /** Of which V8's heap (JS objects) and memory outside it held by JS objects (Buffers). */
  heapPerDeviceKiB: number;
  externalPerDeviceKiB: number;
  cpuConnectPercent: number;
  cpuIdlePercent: number;
  cpuOrdersPercent: number;
  orderLatency: Distribution;
  ordersAcked: number;
  disconnects: number;
  ok: boolean;
}

const pki = await makePki([]);
const steps: Step[] = [];
const mosquittoSteps: { connections: number; connected: number; failed: number; firstError?: string; handshakesPerSecond: number; rssIdleMiB: number; kibPerConnection: number; cpuIdlePercent: number }[] = [];

/** The same fleet against a TLS mosquitto: broker memory per idle mutual-TLS connection. */
async function mosquittoStep(n: number) {
  const broker = await startTlsMosquitto(pki);
  if (!broker) {
    console.warn('mosquitto is not installed or did not start: no memory comparison');
    return;
  }
  const fleet = Fleet.start();
  const rss0 = rssOf(broker.pid);
  await fleet.next('certificates', { type: 'start', ca: pki.ca, port: broker.port, count: n, ratePerSecond: RATE, pingMs: PING_MS, protocol: 'mqtt' });
  const connected = await fleet.next('connected');
  const c0 = readStat(broker.pid);
  await sleep(IDLE_S * 1000);
  const c1 = readStat(broker.pid);
  const rss1 = rssOf(broker.pid);
  const step = {
    connections: n,
    connected: connected.connected,
    failed: connected.failed,
    firstError: connected.firstError,
    handshakesPerSecond: connected.connected / (connected.ms / 1000),
    rssIdleMiB: rss1 / 2 ** 20,
    kibPerConnection: (rss1 - rss0) / 1024 / Math.max(1, connected.connected),
    cpuIdlePercent: ((c1 - c0) / CLOCK_TICKS / IDLE_S) * 100,
  };
  mosquittoSteps.push(step);
  console.log(
    `mosquitto N=${n}: connected ${step.connected} (failed ${step.failed}${step.firstError ? `: ${step.firstError}` : ''}), ${fmt(step.handshakesPerSecond)} handshakes/s, RSS ${fmt(step.rssIdleMiB)} MiB (${fmt(step.kibPerConnection)} KiB/connection), CPU idle ${fmt(step.cpuIdlePercent)}%`,
  );
  await fleet.close();
  await broker.stop();
}

/** utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15). */
function readStat(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}
const CLOCK_TICKS = 100;
console.log(`fleet — node ${process.version}, connect ${RATE}/s, idle ${IDLE_S} s, orders ${ORDER_RATE}/s, p99 limit ${P99_LIMIT_MS} ms`);
for (const n of STEPS) {
  const backend = await Backend.start(pki, null);
  const fleet = Fleet.start();
  const s0 = await backend.stats();
  const certs = fleet.next('certificates', { type: 'start', ca: pki.ca, port: backend.ports.ngttPort, count: n, ratePerSecond: RATE, pingMs: PING_MS });
  const certificatesMs = (await certs).ms;
  const tc = now();
  const s1 = await backend.stats();
  const connected = await fleet.next('connected');
  const connectMs = now() - tc;
  const s2 = await backend.stats();
  await sleep(IDLE_S * 1000);
  const s3 = await backend.stats();

  // One order per device, at ORDER_RATE per second.
  const enqueued: { id: string; t0: number }[] = [];
  const t4 = now();
  const jobs: Promise<void>[] = [];
  const targets = Math.min(ORDERS, connected.connected);
  for (let k = 0; k < targets; k++) {
    const i = Math.floor((k * connected.connected) / targets);
    const wait = t4 + (k * 1000) / ORDER_RATE - now();
    if (wait > 1) await sleep(wait);
    jobs.push(backend.enqueue(i, fleetDeviceId(i), 'ngtt').then((e) => void enqueued.push(e)));
  }
  await Promise.all(jobs);
  await Promise.race([Promise.all(enqueued.map((e) => backend.settled(e.id))), sleep(30_000)]);
  const t5 = now();
  const s4 = await backend.stats();
  const report = await fleet.next('report', { type: 'report' });
  const handledAt = new Map(report.handled);
  const latencies = enqueued.flatMap((e) => (handledAt.has(e.id) ? [handledAt.get(e.id)! - e.t0] : []));
  const cpu = (a: typeof s0, b: typeof s0, ms: number) => ((b.cpuUser + b.cpuSystem - a.cpuUser - a.cpuSystem) / ms) * 100;
  const orderLatency = distribution(latencies);
  const step: Step = {
    devices: n,
    connected: connected.connected,
    failed: connected.failed,
    firstError: connected.firstError,
    certificatesMs,
    handshakesPerSecond: connected.connected / (connected.ms / 1000),
    handshakeP99Ms: connected.handshakeP99,
    rssIdleMiB: s3.rss / 2 ** 20,
    rssAfterOrdersMiB: s4.rss / 2 ** 20,
    rssPerDeviceKiB: (s3.rss - s0.rss) / 1024 / Math.max(1, connected.connected),
    heapPerDeviceKiB: (s3.heapUsed - s0.heapUsed) / 1024 / Math.max(1, connected.connected),
    externalPerDeviceKiB: (s3.external - s0.external) / 1024 / Math.max(1, connected.connected),
    cpuConnectPercent: cpu(s1, s2, connectMs),
    cpuIdlePercent: cpu(s2, s3, IDLE_S * 1000),
    cpuOrdersPercent: cpu(s3, s4, t5 - t4),
    orderLatency,
    ordersAcked: latencies.length,
    disconnects: report.disconnects,
    ok: connected.failed === 0 && latencies.length === targets && orderLatency.p99 < P99_LIMIT_MS,
  };
  steps.push(step);
  console.log(
    `N=${n}: connected ${step.connected} (failed ${step.failed}${step.firstError ? `: ${step.firstError}` : ''}), ${fmt(step.handshakesPerSecond)} handshakes/s, ` +
      `RSS ${fmt(step.rssIdleMiB)} MiB (${fmt(step.rssPerDeviceKiB)} KiB/device, JS heap ${fmt(step.heapPerDeviceKiB)}, external ${fmt(step.externalPerDeviceKiB)}), CPU connect ${fmt(step.cpuConnectPercent)}% idle ${fmt(step.cpuIdlePercent)}% orders ${fmt(step.cpuOrdersPercent)}%, ` +
      `orders ${step.ordersAcked}/${n} p50 ${fmt(orderLatency.p50)} p99 ${fmt(orderLatency.p99)} max ${fmt(orderLatency.max)} ms → ${step.ok ? 'ok' : 'BREAKS'}`,
  );
  await fleet.close();
  await backend.close();
  if (MEMORY_STEPS.includes(n)) await mosquittoStep(n);
  // BENCH_FLEET_KEEP_GOING=1 measures every step even after one broke (idle capacity, memory).
  if (!step.ok && !process.env.BENCH_FLEET_KEEP_GOING) break;
}

// The largest N such that it and every smaller step held.
const firstBroken = steps.findIndex((s) => !s.ok);
const held = (firstBroken < 0 ? steps : steps.slice(0, firstBroken)).map((s) => s.devices);
const memory = mosquittoSteps.flatMap((m) => {
  const s = steps.find((s) => s.devices === m.connections);
  return s ? [{ connections: m.connections, ngttKiB: s.rssPerDeviceKiB, mosquittoKiB: m.kibPerConnection, ratio: s.rssPerDeviceKiB / m.kibPerConnection }] : [];
});
for (const m of memory) console.log(`memory per idle mutual-TLS connection at ${m.connections}: NGTT ${fmt(m.ngttKiB)} KiB, mosquitto ${fmt(m.mosquittoKiB)} KiB, ratio ${fmt(m.ratio)} (goal ≤ 2)`);
if (narrowed) mkdirSync(join(RESULTS_DIR, 'narrowed'), { recursive: true });
const file = writeResult(narrowed ? 'narrowed/fleet' : 'fleet', {
  ...environment(),
  narrowed,
  load: { before: loadBefore, after: loadavg(), note: 'os.loadavg() (1/5/15 min); the 2-core machine is shared with other work' },
  mosquitto: mosquittoVersion(),
  memory,
  mosquittoSteps,
  connectRatePerSecond: RATE,
  idleSeconds: IDLE_S,
  orderRatePerSecond: ORDER_RATE,
  ordersPerStep: ORDERS,
  pingMs: PING_MS,
  p99LimitMs: P99_LIMIT_MS,
  largestHeld: held.length ? Math.max(...held) : 0,
  steps,
  notes: [
    'One server process (reference server, SQLite synchronous = FULL) and one fleet process on the same 2-core machine.',
    'Each device has its own certificate (derived from one template: same key pair, DeviceID replaced, re-signed by the CA).',
    'Each connection costs one file descriptor in each process; ulimit -n (soft/hard) bounds N per process.',
    'Memory per connection: (RSS after the idle time − RSS before the fleet connected) / connections, for the NGTT server process and for mosquitto alike; the same fleet process and certificates connect to both, mosquitto with a TLS listener that requires client certificates.',
  ],
});
console.log(`largest N with p99 < ${P99_LIMIT_MS} ms: ${held.length ? Math.max(...held) : 'none'}; written ${file}`);
