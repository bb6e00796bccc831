/**
 * Shared set-up for the RabbitMQ tests: reachability, unique names, cleanup, bounded waits.
 *
 * Every test uses a fresh prefix (uniquePrefix) and deletes what it created in its teardown,
 * which tap runs also when the test fails. The broker's file-handle budget: each quorum queue
 * (one per device) reserves about 3 of the broker's file handles even when idle (issue #16:
 * 927 available at `ulimit -n` 1024, so about 300 queues), and several helpers share one broker.
 * So a test names only the few devices it needs (MAX_DEVICE_QUEUES per prefix, enforced below),
 * and the order queues are deleted at teardown rather than left to expire.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import type { Channel } from 'amqplib';
import type { Section } from '../../src/protocol/index.js';
import {
  BrokerConnection,
  deleteSharedTopology,
  openRabbitBackbone,
  type RabbitBackbone,
  type RabbitBackboneOptions,
  type Topology,
} from '../../src/server/rabbitmq/index.js';

export const BROKER_URL = process.env.NGTT_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const SKIP_REASON = `RabbitMQ not reachable at ${new URL(BROKER_URL).host} (start it, e.g. .ci/services); skipping`;

export function brokerReachable(timeoutMs = 1_000): Promise<boolean> {
  const url = new URL(BROKER_URL);
  return new Promise((resolve) => {
    const s = tcpConnect({ host: url.hostname, port: Number(url.port || 5672) });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Quorum queues one test prefix may create (see the file comment). */
export const MAX_DEVICE_QUEUES = 20;

export const uniquePrefix = (): string => `ngtt-test-${randomBytes(5).toString('hex')}`;

interface Tap {
  teardown(fn: () => unknown): void;
}

interface PrefixState {
  backbones: RabbitBackbone[];
  devices: Set<string>;
}
const prefixes = new Map<string, PrefixState>();

/**
 * A backbone with a fresh prefix whose queues and exchanges are deleted when the test ends.
 * Pass `prefix` to share a topology between two backbones ("two gateways"): the cleanup runs
 * once, after every backbone of the prefix is closed (so no consumer re-declares a queue).
 */
export async function testBackbone(t: Tap, options: RabbitBackboneOptions = {}): Promise<RabbitBackbone> {
  const prefix = options.prefix ?? uniquePrefix();
  const bb = await openRabbitBackbone({
    url: BROKER_URL,
    connectionName: `${prefix}-${randomBytes(3).toString('hex')}`,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
    quorumGroupSize: 1,
    ...options,
    prefix,
  });
  let state = prefixes.get(prefix);
  if (!state) {
    const s: PrefixState = { backbones: [], devices: new Set() };
    prefixes.set(prefix, s);
    state = s;
    t.teardown(async () => {
      for (const b of s.backbones) await b.close();
      await cleanup(bb.topology, s.devices);
      prefixes.delete(prefix);
    });
  }
  state.backbones.push(bb);
  // Remember every device whose queue this backbone may create (and keep within the budget).
  const devices = state.devices;
  const remember = (deviceId: string) => {
    devices.add(deviceId);
    if (devices.size > MAX_DEVICE_QUEUES) throw new Error(`a test should not create more than ${MAX_DEVICE_QUEUES} device queues (broker file handles, see the file comment)`);
  };
  const orders = bb.orders;
  const enqueue = orders.enqueueOrder.bind(orders);
  const open = orders.openOrderSource.bind(orders);
  orders.enqueueOrder = (deviceId, ...rest) => (remember(deviceId), enqueue(deviceId, ...rest));
  orders.openOrderSource = (deviceId, ...rest) => (remember(deviceId), open(deviceId, ...rest));
  return bb;
}

/** Deletes the shared topology and the given devices' order queues. */
export async function cleanup(topo: Topology, devices: Iterable<string>): Promise<void> {
  const conn = await amqp.connect(BROKER_URL);
  try {
    for (const d of devices) await withCh(conn, (ch) => ch.deleteQueue(topo.ordersQueue(d)));
    await withCh(conn, (ch) => deleteSharedTopology(ch, topo)).catch(() => {});
    await withCh(conn, (ch) => ch.deleteExchange(`${topo.prefix}.control`)).catch(() => {});
  } finally {
    await conn.close().catch(() => {});
  }
}

async function withCh<T>(conn: amqp.ChannelModel, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => {});
  }
}

const run = promisify(execFile);

/**
 * Broker-side close (CONNECTION_FORCED) of the connection under `conn`, found by its client
 * port in `rabbitmqctl list_connections`. Only this test's connection is touched.
 */
export async function rabbitmqctlClose(conn: BrokerConnection): Promise<void> {
  const model = conn.current as unknown as { connection: { stream: { localPort?: number } } } | null;
  const port = model?.connection.stream.localPort;
  if (!port) throw new Error('not connected');
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'peer_port', '--no-table-headers'], { timeout: 15_000 });
  const row = stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[1] === String(port));
  if (!row) throw new Error(`connection from port ${port} not listed by rabbitmqctl`);
  await run('rabbitmqctl', ['-q', 'close_connection', row[0], 'ngtt test: forced close'], { timeout: 15_000 });
}

export async function hasRabbitmqctl(): Promise<boolean> {
  try {
    await run('rabbitmqctl', ['-q', 'list_connections', 'pid', '--no-table-headers'], { timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/** Client-side abrupt drop: destroys the TCP socket under an amqplib connection. */
export function dropSocket(conn: BrokerConnection): void {
  const model = conn.current as unknown as { connection: { stream: { destroy(err?: Error): void } } } | null;
  if (!model) throw new Error('not connected');
  model.connection.stream.destroy(new Error('simulated network drop'));
}

/** Polls `cond` every `everyMs` until it is true; rejects after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000, everyMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Ready-message count of a queue, via a passive declare on a throwaway channel. */
export async function readyCount(conn: BrokerConnection, queue: string): Promise<number> {
  return conn.withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount);
}

/** An order whose single write carries `n`, to tell orders apart. */
export const order = (n: number): Section[] => [{ orders: [{ type: 'write', path: 'W1', value: n }], disposition: 0 }];

/** Enqueues n orders with values from, from+1, ...; returns their ids in order. */
export async function enqueue(bb: RabbitBackbone, deviceId: string, n: number, from = 1): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < from + n; i++) ids.push(await bb.orders.enqueueOrder(deviceId, order(i)));
  return ids;
}
