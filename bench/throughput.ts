/**
 * Data upload (issue #6, scenarios 2 and 4): pathpoint values per second from one device until
 * the server confirms them durable, for batches of 1, 100 and 1 000 values, and bytes on the
 * wire per value.
 *
 * - NGTT: NgttConnection.syncPathpoints, pipelined (a window of batches in flight), reference
 *   server on SQLite (synchronous = FULL).
 * - HTTPS: DeviceHttpsClient.uploadPathpoints (MiniJSON, keep-alive), one request at a time as a
 *   device does; same server and store. HTTPS+JSON: the same with a JSON body.
 * - MQTT QoS 1: the device publishes [seq][MiniJSON] on a TLS mosquitto started by the
 *   benchmark, with the same window in flight; the backend subscriber stores it with the same
 *   store and acknowledges on a reply topic; a batch counts once that acknowledgement is back.
 * - Raw TLS: the same frame bytes (pre-encoded) pushed on a mutual-TLS socket to a sink that
 *   only counts them: the transport's ceiling (no encoding, no parsing, no storage, no replies).
 *
 * - SQLite store only: distinct batches of the same size into a fresh store, no network, in a
 *   process of its own (bench/lib/store-ceiling.ts), once per round: the storage ceiling.
 *
 * Every batch is distinct (bench/lib/uploads.ts DistinctBatches): each moves its pathpoints on in
 * time and changes every value, as a real device's readings do, so the store's dedupe of re-sent
 * batches (by digest) never skips one. After every timed stretch the benchmark checks that the
 * server's store grew by exactly the batches confirmed, and that the newest stored batch holds
 * the values sent; otherwise it stops without writing results.
 *
 * Every device encodes each batch from the series (the codec is part of the cost). Contenders
 * take turns within each round (BENCH_ROUNDS, default 3, of BENCH_SECONDS, default 1.5 s each),
 * ratios are taken per round and their median reported. Bytes: a counting TCP proxy between
 * device and server (or broker) counts TLS bytes both ways after the connection is up.
 * `npm run bench:throughput` writes bench/results/throughput.json; a narrowed run (BENCH_ONLY,
 * BENCH_BATCHES without 100 and 1000, fewer BENCH_ROUNDS or shorter BENCH_SECONDS, or no
 * mosquitto) writes bench/results/narrowed/throughput.json instead and never the published file.
 */
import { mkdirSync } from 'node:fs';
import https from 'node:https';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import mqtt from 'mqtt';
import { encode } from '../src/minijson/index.js';
import { encodeFrame, FrameType, type PathpointSeries } from '../src/protocol/index.js';
import { DeviceHttpsClient, NgttConnection } from '../src/device/index.js';
import { Backend } from './lib/backend-client.js';
import { DistinctBatches, keepInFlightCounted } from './lib/uploads.js';
import { measureStoreCeiling } from './lib/store-ceiling.js';
import { CountingProxy, environment, fmt, makePki, median, mosquittoVersion, noDelay, now, RESULTS_DIR, startTlsMosquitto, writeResult } from './lib/common.js';

const DEFAULT_ROUNDS = 3;
const DEFAULT_SECONDS = 1.5;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? DEFAULT_ROUNDS);
const SECONDS = Number(process.env.BENCH_SECONDS ?? DEFAULT_SECONDS);
const BATCHES = (process.env.BENCH_BATCHES ?? '1,100,1000').split(',').map(Number);

const DEVICE = 'tp-device';
const pki = await makePki([DEVICE]);
const mosquitto = await startTlsMosquitto(pki);
if (!mosquitto) console.warn('mosquitto is not installed or did not start: MQTT is left out');
const backend = await Backend.start(pki, mosquitto?.port ?? null);
const { ngttPort, httpsPort, rawPort } = backend.ports;
const deviceTls = { ca: pki.ca.cert, cert: pki.devices[DEVICE].cert, key: pki.devices[DEVICE].key };

/** Batches in flight for the pipelined protocols: about 1 MiB, between 8 and 256. */
const WINDOW_BYTES = Number(process.env.BENCH_WINDOW_BYTES ?? 1 << 20);
const windowFor = (batchBytes: number) => Math.max(8, Math.min(256, Math.ceil(WINDOW_BYTES / batchBytes)));

interface Contender {
  name: string;
  /** Uploads one batch; resolves once the server confirmed it durable. */
  upload(series: PathpointSeries[]): Promise<void>;
  window(batchBytes: number): number;
  close(): Promise<void>;
}

async function ngttContender(port = ngttPort): Promise<Contender> {
  const c = await NgttConnection.connect({ host: '127.0.0.1', port, ...deviceTls, wantOrders: false });
  return { name: 'NGTT', upload: (s) => c.syncPathpoints(s), window: windowFor, close: () => c.close() };
}

async function httpsContender(port = httpsPort): Promise<Contender> {
  const client = new DeviceHttpsClient({ baseUrl: `https://127.0.0.1:${port}`, ...deviceTls });
  return { name: 'HTTPS', upload: (s) => client.uploadPathpoints(s), window: () => 1, close: async () => client.close() };
}

async function httpsJsonContender(port = httpsPort): Promise<Contender> {
  const agent = new https.Agent({ keepAlive: true, ...deviceTls, rejectUnauthorized: true });
  const upload = (series: PathpointSeries[]) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify(series);
      const req = https.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/v1/device/pathpoints', agent, headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Content-Length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { name: 'HTTPS+JSON', upload, window: () => 1, close: async () => agent.destroy() };
}

async function mqttContender(port: number): Promise<Contender> {
  const client = noDelay(await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ...deviceTls, clientId: DEVICE, clean: true, reconnectPeriod: 0 }));
  await client.subscribeAsync(`ngtt/${DEVICE}/data-ack`, { qos: 1 });
  const waiting = new Map<number, () => void>();
  client.on('message', (_t, payload) => {
    const seq = payload.readUInt16BE(0);
    waiting.get(seq)?.();
    waiting.delete(seq);
  });
  let seq = 0;
  const upload = (series: PathpointSeries[]) =>
    new Promise<void>((resolve, reject) => {
      const encoded = encode(series);
      const payload = Buffer.allocUnsafe(2 + encoded.length);
      seq = (seq + 1) & 0xffff;
      payload.writeUInt16BE(seq, 0);
      payload.set(encoded, 2);
      waiting.set(seq, resolve);
      client.publish(`ngtt/${DEVICE}/data`, payload, { qos: 1 }, (e) => e && reject(e));
    });
  return { name: 'MQTT QoS 1', upload, window: windowFor, close: () => client.endAsync() };
}

/** The ceiling: frame bytes, pre-encoded, on a TLS socket to a sink that only counts. */
async function rawContender(port = rawPort): Promise<Contender & { blast(frame: Buffer, count: number): Promise<void> }> {
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...deviceTls, rejectUnauthorized: true }, () => resolve(s));
    s.once('error', reject);
  });
  socket.setNoDelay(true);
  let replied: (() => void) | null = null;
  socket.on('data', () => replied?.());
  const blast = async (frame: Buffer, count: number) => {
    const done = new Promise<void>((r) => (replied = r));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(frame.length * count);
    socket.write(header);
    for (let i = 0; i < count; i++) if (!socket.write(frame)) await new Promise((r) => socket.once('drain', r));
    await done;
  };
  return {
    name: 'raw TLS',
    blast,
    upload: () => Promise.reject(new Error('use blast')),
    window: () => 1,
    close: async () => void socket.destroy(),
  };
}

/**
 * Keeps the contender's window of uploads in flight for `seconds`, each a distinct batch;
 * values per second confirmed. Then checks that the store grew by exactly the batches confirmed
 * (a benchmark that measured dedupe hits instead of storage stops here).
 */
async function timed(c: Contender, batches: DistinctBatches, batchBytes: number, seconds: number): Promise<number> {
  const before = await backend.stored();
  const cpu0 = await backend.stats();
  const { rate, completed } = await keepInFlightCounted(() => c.upload(batches.next()), c.window(batchBytes), batches.values, seconds);
  const cpu1 = await backend.stats();
  const after = await backend.stored();
  // The server process's CPU per value (µs): the machine is shared, so rates move with its load; this moves less.
  (serverCpu[`${c.name}@${batches.values}`] ??= []).push(((cpu1.cpuUser + cpu1.cpuSystem - cpu0.cpuUser - cpu0.cpuSystem) * 1000) / (completed * batches.values));
  if (after.batches - before.batches !== completed || after.lastValues !== batches.values)
    throw new Error(
      `${c.name}, batch ${batches.values}: ${completed} batches confirmed but the store grew by ${after.batches - before.batches} (newest holds ${after.lastValues} values): refusing to report`,
    );
  storedCheck.batches += completed;
  storedCheck.values += completed * batches.values;
  return rate;
}
/** What the store-growth checks saw, over the whole run. */
const storedCheck = { batches: 0, values: 0 };
/** "contender@batch" → server-process CPU µs per value, per timed stretch (MQTT: the backend subscriber; mosquitto's own CPU is not in it). */
const serverCpu: Record<string, number[]> = {};

async function timedRaw(raw: Awaited<ReturnType<typeof rawContender>>, frame: Buffer, values: number, seconds: number): Promise<number> {
  const perChunk = Math.max(1, Math.ceil((4 << 20) / frame.length));
  let sent = 0;
  const t0 = now();
  while (now() - t0 < seconds * 1000) {
    await raw.blast(frame, perChunk);
    sent += perChunk;
  }
  return (sent * values) / ((now() - t0) / 1000);
}

// BENCH_ONLY=NGTT,raw (names, comma-separated) narrows the run, e.g. to profile one contender.
const only = process.env.BENCH_ONLY?.split(',');
const narrowed = !!only || !mosquitto || ROUNDS < DEFAULT_ROUNDS || SECONDS < DEFAULT_SECONDS || !BATCHES.includes(100) || !BATCHES.includes(1000);
console.log(
  `upload throughput — node ${process.version}, ${ROUNDS} rounds × ${SECONDS} s per contender, every batch distinct, MQTT: ${mosquitto ? mosquittoVersion() : 'absent'}` +
    `, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}${narrowed ? ' (narrowed run: results go to bench/results/narrowed/)' : ''}`,
);
const wanted = (name: string) => !only || only.some((o) => name.toLowerCase().includes(o.toLowerCase()));
const contenders: Contender[] = [await ngttContender(), await httpsContender(), await httpsJsonContender()];
if (mosquitto) contenders.push(await mqttContender(mosquitto.port));
for (const c of contenders.filter((c) => !wanted(c.name))) await c.close();
contenders.splice(0, contenders.length, ...contenders.filter((c) => wanted(c.name)));
const raw = await rawContender();

type Rates = Record<string, number[]>;
const throughput: {
  batch: number;
  batchBytes: number;
  window: number;
  ceilingGroup: number;
  rates: Rates;
  median: Record<string, number>;
  ratios: Record<string, number>;
  ceilingRuns: { batches: number; seconds: number; poolExhausted: boolean; cpuMicrosPerValue: number }[];
  serverCpuMicrosPerValue: Record<string, number>;
  load: number[][];
}[] = [];
const loadBefore = loadavg();
for (const values of BATCHES) {
  const batches = new DistinctBatches(values); // one sequence for every contender: no batch repeats within the run
  const encodedBytes = encode(batches.next()).length;
  const frame = encodeFrame(1, FrameType.DATA_STREAM, encode(batches.next()));
  for (const c of contenders) await timed(c, batches, encodedBytes, 0.3); // warm-up
  const rates: Rates = Object.fromEntries([...contenders.map((c) => c.name), 'raw TLS', 'SQLite store only'].filter(wanted).map((k) => [k, []]));
  const ratioRuns: Record<string, number[]> = {};
  const ceilingGroup = Math.max(1, Math.round(windowFor(encodedBytes) / 2));
  const ceilingRuns: { batches: number; seconds: number; poolExhausted: boolean; cpuMicrosPerValue: number }[] = [];
  const load: number[][] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...contenders].reverse() : contenders;
    const round: Record<string, number> = {};
    load.push(loadavg());
    for (const c of order) round[c.name] = await timed(c, batches, encodedBytes, SECONDS);
    if (wanted('raw')) round['raw TLS'] = await timedRaw(raw, frame, values, SECONDS);
    if (wanted('store')) {
      // Distinct batches for SECONDS at up to 30 M values/s (a quiet machine stored 14 M/s at batch 1 000);
      // should the pool run out, the rate is over the time it lasted, and ceilingRuns says so.
      const ceiling = await measureStoreCeiling({ values, group: ceilingGroup, seconds: SECONDS, poolValues: 30e6 * SECONDS });
      round['SQLite store only'] = ceiling.rate;
      ceilingRuns.push({ batches: ceiling.batches, seconds: ceiling.seconds, poolExhausted: ceiling.poolExhausted, cpuMicrosPerValue: ceiling.cpuMicrosPerValue });
    }
    for (const [k, v] of Object.entries(round)) rates[k].push(v);
    if (round.NGTT !== undefined) for (const k of Object.keys(round)) if (k !== 'NGTT') (ratioRuns[`NGTT/${k}`] ??= []).push(round.NGTT / round[k]);
  }
  const med = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)]));
  const ratios = Object.fromEntries(Object.entries(ratioRuns).map(([k, v]) => [k, median(v)]));
  const serverCpuMicrosPerValue = Object.fromEntries(contenders.map((c) => [c.name, median((serverCpu[`${c.name}@${values}`] ?? []).slice(1))])); // without the warm-up
  if (ceilingRuns.length) serverCpuMicrosPerValue['SQLite store only'] = median(ceilingRuns.map((r) => r.cpuMicrosPerValue));
  throughput.push({ batch: values, batchBytes: encodedBytes, window: windowFor(encodedBytes), ceilingGroup, rates, median: med, ratios, ceilingRuns, serverCpuMicrosPerValue, load });
  console.log(`batch ${values}: ` + Object.entries(med).map(([k, v]) => `${k} ${fmt(v)}/s`).join(', ') + ' | ' + Object.entries(ratios).map(([k, v]) => `${k} ${fmt(v)}`).join(', '));
  console.log(`  server CPU µs/value: ` + Object.entries(serverCpuMicrosPerValue).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', '));
}
for (const c of contenders) await c.close();
await raw.close();

// Bytes on the wire: a counting proxy in front of each server; steady state after connecting.
const bytes: { batch: number; perValue: Record<string, { up: number; down: number; total: number }>; handshake: Record<string, number> }[] = [];
for (const values of BATCHES) {
  const batches = new DistinctBatches(values);
  batches.count = 10_000_000; // past every batch the throughput rounds sent: still distinct
  const count = Math.max(20, Math.ceil(2000 / values));
  const perValue: Record<string, { up: number; down: number; total: number }> = {};
  const handshake: Record<string, number> = {};
  type Target = [string, number, (port: number) => Promise<Contender>];
  const all: Target[] = [
    ['NGTT', ngttPort, ngttContender],
    ['HTTPS', httpsPort, httpsContender],
    ['HTTPS+JSON', httpsPort, httpsJsonContender],
  ];
  if (mosquitto) all.push(['MQTT QoS 1', mosquitto.port, mqttContender]);
  const targets = all.filter(([name]) => wanted(name));
  for (const [name, port, make] of targets) {
    const proxy = new CountingProxy(port);
    await proxy.start();
    const c = await make(proxy.port);
    await c.upload(batches.next()); // the HTTPS agents connect lazily
    handshake[name] = proxy.up + proxy.down;
    proxy.reset();
    for (let i = 0; i < count; i++) await c.upload(batches.next()); // one at a time: no batching of replies helps anyone
    perValue[name] = { up: proxy.up / (count * values), down: proxy.down / (count * values), total: (proxy.up + proxy.down) / (count * values) };
    await c.close();
    await proxy.stop();
  }
  bytes.push({ batch: values, perValue, handshake });
  console.log(`bytes/value, batch ${values}: ` + Object.entries(perValue).map(([k, v]) => `${k} ${fmt(v.total)}`).join(', '));
}

if (narrowed) mkdirSync(join(RESULTS_DIR, 'narrowed'), { recursive: true });
const file = writeResult(narrowed ? 'narrowed/throughput' : 'throughput', {
  ...environment(),
  narrowed,
  load: { before: loadBefore, after: loadavg(), note: 'os.loadavg() (1/5/15 min); the 2-core machine is shared with other work' },
  distinctBatches: true,
  storedCheck: { ...storedCheck, note: 'after every timed stretch the server store grew by exactly the batches confirmed (rows counted on a read-only connection)' },
  mqtt: mosquitto ? `${mosquittoVersion()}, TLS 1.3 listener with require_certificate, started by the benchmark` : null,
  rounds: ROUNDS,
  secondsPerRound: SECONDS,
  unit: 'values/s',
  throughput,
  bytes,
  notes: [
    'NGTT and MQTT keep a window of about 1 MiB (8..256 batches) in flight; HTTPS sends one request at a time on a keep-alive connection.',
    'A batch counts once the server (MQTT: the backend subscriber, after its store commit) confirmed it durable.',
    'Every batch is distinct: each moves its pathpoints on in time (one value per second) and changes every value, as a real device does; the store dedupes re-sent batches by digest, so repeating one batch would measure hash lookups, not storage.',
    'After every timed stretch the benchmark checked that the server store grew by exactly the batches confirmed; the run stops without results otherwise.',
    'SQLite store only: store.ingest of distinct batches (encoded before the clock starts), half a window per transaction, in a fresh process and a fresh store each round: what durable storage alone allows.',
    'serverCpuMicrosPerValue: CPU time of the server process (user + system) per value confirmed, median over rounds; for MQTT the backend subscriber only (mosquitto is a process of its own); for the ceiling the store process while it stores.',
    'raw TLS: the same frame bytes pre-encoded, counted by a sink; no encoding, parsing, storage or per-batch replies.',
    'bytes: TLS application bytes both ways between device and server/broker (TCP payload via a counting proxy), after the first batch; the handshake and first batch are reported apart.',
  ],
});
console.log(`written ${file}`);
await backend.close();
await mosquitto?.stop();
