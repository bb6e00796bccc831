/**
 * Order delivery latency (issue #6, scenario 1): the server enqueues an order; how long until
 * the device's handler runs ("handler"), and until the server has the acknowledgement ("ack").
 *
 * - NGTT: NgttConnection to the reference server; the handler acks at once (ORDER_CONFIRM).
 * - MQTT QoS 1: the backend publishes to ngtt/<device>/orders on a TLS mosquitto started by the
 *   benchmark; the device acks on ngtt/<device>/acks (QoS 1). Same store work as NGTT.
 * - HTTPS polling, 1 s: DeviceHttpsClient.pollOrders every second; orders enqueued at random
 *   moments. "ack" is when the poll took the order (HTTP has no execution acknowledgement).
 * - HTTPS polling, 60 s: simulated (Monte Carlo): uniform phase in the interval plus a poll
 *   round-trip drawn from the measured 1 s polls; the same model is checked against the 1 s
 *   measurement.
 *
 * Orders go one at a time (the next is enqueued once the previous one is acknowledged); NGTT and
 * MQTT alternate in blocks, so a busy machine slows both alike. The server side runs in a child
 * process (bench/lib/backend.ts); timestamps are CLOCK_MONOTONIC in both processes.
 * `npm run bench:latency`; env BENCH_RUNS (3), BENCH_ORDERS (1000 per protocol and run),
 * BENCH_POLL_ORDERS (200). Fewer runs or orders, or no mosquitto, is a narrowed run: it writes
 * bench/results/narrowed/latency.json, never the published file. Goal (issue 14): NGTT p99 ≤
 * 0.5× MQTT QoS 1 p99 in the same run.
 */
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { decode } from '../src/minijson/index.js';
import { parseSections } from '../src/protocol/index.js';
import { DeviceHttpsClient, NgttConnection } from '../src/device/index.js';
import { Backend } from './lib/backend-client.js';
import {
  distribution,
  environment,
  fmt,
  makePki,
  median,
  medianDistribution,
  mosquittoVersion,
  noDelay,
  now,
  RESULTS_DIR,
  sleep,
  startTlsMosquitto,
  writeResult,
  type Distribution,
} from './lib/common.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ORDERS = Number(process.env.BENCH_ORDERS ?? 1000);
const BLOCK = 100;
const POLL_ORDERS = Number(process.env.BENCH_POLL_ORDERS ?? 200);
const GOAL_P99_VS_MQTT = 0.5;
const loadBefore = loadavg();
const ORDER_TIMEOUT_MS = 10_000;

type Via = 'ngtt' | 'mqtt';
interface Sample {
  handler: number;
  ack: number;
}

const pki = await makePki(['lat-ngtt', 'lat-mqtt', 'lat-poll']);
const mosquitto = await startTlsMosquitto(pki);
if (!mosquitto) console.warn('mosquitto is not installed or did not start: MQTT is left out');
const backend = await Backend.start(pki, mosquitto?.port ?? null);
const { ngttPort, httpsPort } = backend.ports;
const tlsOf = (id: string) => ({ ca: pki.ca.cert, cert: pki.devices[id].cert, key: pki.devices[id].key });

// Handler timestamps by order id, from every device below.
const handledAt = new Map<string, number>();
const handledWaiters = new Map<string, () => void>();
const handled = (id: string) => {
  handledAt.set(id, now());
  handledWaiters.get(id)?.();
};
const waitHandled = (id: string) =>
  handledAt.has(id) ? Promise.resolve() : new Promise<void>((r) => handledWaiters.set(id, () => (handledWaiters.delete(id), r())));

const ngtt = await NgttConnection.connect({ host: '127.0.0.1', port: ngttPort, ...tlsOf('lat-ngtt') });
ngtt.onOrder((order) => {
  handled(order.id!);
  order.ack();
});

let mqttDevice: mqtt.MqttClient | null = null;
if (mosquitto) {
  mqttDevice = await mqtt.connectAsync(`mqtts://127.0.0.1:${mosquitto.port}`, { ...tlsOf('lat-mqtt'), clientId: 'lat-mqtt', clean: true, reconnectPeriod: 0 });
  noDelay(mqttDevice);
  await mqttDevice.subscribeAsync('ngtt/lat-mqtt/orders', { qos: 1 });
  mqttDevice.on('message', (_topic, payload) => {
    const order = parseSections(decode(payload));
    handled(order.id!);
    mqttDevice!.publish('ngtt/lat-mqtt/acks', order.id!, { qos: 1 });
  });
}

async function oneOrder(seq: number, via: Via): Promise<Sample> {
  const { id, t0 } = await backend.enqueue(seq, via === 'ngtt' ? 'lat-ngtt' : 'lat-mqtt', via);
  const timeout = sleep(ORDER_TIMEOUT_MS).then(() => {
    throw new Error(`order ${seq} over ${via} not acknowledged within ${ORDER_TIMEOUT_MS} ms`);
  });
  await Promise.race([Promise.all([waitHandled(id), backend.settled(id)]), timeout]);
  return { handler: handledAt.get(id)! - t0, ack: backend.settledAt.get(id)! - t0 };
}

/** One run: ORDERS per protocol, alternating in blocks of BLOCK. */
async function pushRun(run: number) {
  const vias: Via[] = mqttDevice ? ['ngtt', 'mqtt'] : ['ngtt'];
  const samples: Record<Via, Sample[]> = { ngtt: [], mqtt: [] };
  for (let i = 0; i < 10; i++) for (const via of vias) await oneOrder(-1 - i, via); // warm-up
  let seq = run * 1_000_000;
  for (let block = 0; block < ORDERS / BLOCK; block++) {
    const order = block % 2 ? [...vias].reverse() : vias;
    for (const via of order) for (let i = 0; i < BLOCK; i++) samples[via].push(await oneOrder(seq++, via));
  }
  const d = (via: Via, k: keyof Sample) => distribution(samples[via].map((s) => s[k]));
  return {
    ngtt: { handler: d('ngtt', 'handler'), ack: d('ngtt', 'ack') },
    mqtt: mqttDevice ? { handler: d('mqtt', 'handler'), ack: d('mqtt', 'ack') } : null,
  };
}

/** HTTPS polling every intervalMs; POLL_ORDERS orders enqueued at random moments. */
async function pollRun(intervalMs: number) {
  const client = new DeviceHttpsClient({ baseUrl: `https://127.0.0.1:${httpsPort}`, ...tlsOf('lat-poll') });
  const rtts: number[] = [];
  let polling = true;
  const poller = (async () => {
    let next = now();
    while (polling) {
      const t = now();
      const body = (await client.request('POST', '/v1/device/orders')) as { id?: string }[];
      parseSections(body);
      for (const s of body) if (s.id && !handledAt.has(s.id)) handled(s.id);
      rtts.push(now() - t);
      next += intervalMs;
      await sleep(Math.max(0, next - now()));
    }
  })();
  const samples: Sample[] = [];
  const gap = (intervalMs * 2) / 8; // on average 4 orders per poll interval
  const waits: Promise<void>[] = [];
  for (let i = 0; i < POLL_ORDERS; i++) {
    await sleep(Math.random() * gap);
    const { id, t0 } = await backend.enqueue(2_000_000 + i, 'lat-poll', 'ngtt');
    waits.push(
      Promise.all([waitHandled(id), backend.settled(id)]).then(() => {
        samples.push({ handler: handledAt.get(id)! - t0, ack: backend.deliveredAt.get(id)! - t0 });
      }),
    );
  }
  await Promise.race([Promise.all(waits), sleep(intervalMs * 3 + ORDER_TIMEOUT_MS)]);
  polling = false;
  await poller;
  client.close();
  return {
    handler: distribution(samples.map((s) => s.handler)),
    ack: distribution(samples.map((s) => s.ack)),
    pollRtt: distribution(rtts),
    rtts,
  };
}

/** Latency = (interval − phase) + poll round-trip, phase uniform, round-trip from the measured ones. */
function simulatePolling(intervalMs: number, rtts: number[], n = 100_000): Distribution {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.random() * intervalMs + rtts[Math.floor(Math.random() * rtts.length)]);
  return distribution(out);
}

const narrowed = !mosquitto || RUNS < 3 || ORDERS < 1000 || POLL_ORDERS < 200;
console.log(
  `order latency — node ${process.version}, ${RUNS} runs × ${ORDERS} orders per protocol, MQTT: ${mosquitto ? mosquittoVersion() + ' (TLS, client certificates)' : 'absent'}` +
    `, load ${loadBefore.map((l) => l.toFixed(1)).join(' ')}${narrowed ? ' (narrowed run: results go to bench/results/narrowed/)' : ''}`,
);
const runs: Awaited<ReturnType<typeof pushRun>>[] = [];
for (let r = 0; r < RUNS; r++) {
  const result = await pushRun(r);
  runs.push(result);
  console.log(
    `run ${r + 1}: NGTT handler p50 ${fmt(result.ngtt.handler.p50)} p99 ${fmt(result.ngtt.handler.p99)} ms` +
      (result.mqtt ? ` | MQTT handler p50 ${fmt(result.mqtt.handler.p50)} p99 ${fmt(result.mqtt.handler.p99)} ms` : ''),
  );
}
console.log(`HTTPS polling every 1 s, ${POLL_ORDERS} orders…`);
const poll = await pollRun(1000);
const simulated1s = simulatePolling(1000, poll.rtts);
const simulated60s = simulatePolling(60_000, poll.rtts);

const ngttHandler = medianDistribution(runs.map((r) => r.ngtt.handler));
const ngttAck = medianDistribution(runs.map((r) => r.ngtt.ack));
const mqttHandler = mosquitto ? medianDistribution(runs.map((r) => r.mqtt!.handler)) : null;
const mqttAck = mosquitto ? medianDistribution(runs.map((r) => r.mqtt!.ack)) : null;
const rows = [
  { protocol: 'NGTT (push)', handler: ngttHandler, ack: ngttAck, method: `measured, median of ${RUNS} runs × ${ORDERS} orders` },
  ...(mqttHandler ? [{ protocol: 'MQTT QoS 1 (TLS mosquitto)', handler: mqttHandler, ack: mqttAck!, method: `measured, median of ${RUNS} runs × ${ORDERS} orders` }] : []),
  { protocol: 'HTTPS polling 1 s', handler: poll.handler, ack: poll.ack, method: `measured, ${poll.handler.n} orders; ack = poll took it` },
  { protocol: 'HTTPS polling 60 s', handler: simulated60s, ack: null, method: 'simulated: uniform phase + measured poll round-trip (100 000 draws)' },
];
const ratios = {
  // per run, then the median: NGTT p99 / MQTT p99 (< 1 is better for NGTT)
  p99VsMqtt: mosquitto ? median(runs.map((r) => r.ngtt.handler.p99 / r.mqtt!.handler.p99)) : null,
  p99AckVsMqtt: mosquitto ? median(runs.map((r) => r.ngtt.ack.p99 / r.mqtt!.ack.p99)) : null,
  // how many times better than 1 s polling at p99
  p99TimesBetterThanPoll1s: poll.handler.p99 / ngttHandler.p99,
  p99TimesBetterThanPoll60s: simulated60s.p99 / ngttHandler.p99,
};

console.log('\n| protocol | handler p50 | p99 | max | server ack p50 | p99 | max | method |');
console.log('|---|---:|---:|---:|---:|---:|---:|---|');
for (const r of rows)
  console.log(
    `| ${r.protocol} | ${fmt(r.handler.p50)} | ${fmt(r.handler.p99)} | ${fmt(r.handler.max)} | ${fmt(r.ack?.p50 ?? NaN)} | ${fmt(r.ack?.p99 ?? NaN)} | ${fmt(r.ack?.max ?? NaN)} | ${r.method} |`,
  );
console.log(`\n(ms) NGTT p99 / MQTT p99: ${fmt(ratios.p99VsMqtt ?? NaN)} (goal ≤ ${GOAL_P99_VS_MQTT}: ${(ratios.p99VsMqtt ?? Infinity) <= GOAL_P99_VS_MQTT ? 'met' : 'missed'}); 1 s polling p99 / NGTT p99: ${fmt(ratios.p99TimesBetterThanPoll1s)}×`);
console.log(`model check, 1 s polling: measured p50 ${fmt(poll.handler.p50)} p99 ${fmt(poll.handler.p99)}, simulated p50 ${fmt(simulated1s.p50)} p99 ${fmt(simulated1s.p99)}`);

if (narrowed) mkdirSync(join(RESULTS_DIR, 'narrowed'), { recursive: true });
const file = writeResult(narrowed ? 'narrowed/latency' : 'latency', {
  ...environment(),
  narrowed,
  load: { before: loadBefore, after: loadavg(), note: 'os.loadavg() (1/5/15 min); the 2-core machine is shared with other work' },
  goal: { p99VsMqtt: GOAL_P99_VS_MQTT, met: (ratios.p99VsMqtt ?? Infinity) <= GOAL_P99_VS_MQTT },
  mqtt: mosquitto ? `${mosquittoVersion()}, TLS 1.3 listener with require_certificate, started by the benchmark` : null,
  runs: RUNS,
  ordersPerRun: ORDERS,
  unit: 'ms',
  rows,
  ratios,
  perRun: runs,
  polling: { interval1s: { measured: poll.handler, pollRtt: poll.pollRtt, simulated: simulated1s }, interval60s: { simulated: simulated60s } },
});
console.log(`written ${file}`);

await ngtt.close();
await mqttDevice?.endAsync();
await backend.close();
await mosquitto?.stop();
