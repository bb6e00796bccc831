/**
 * Per-device gateway memory as a slope (issue #16): one gateway process in fleet mode
 * (`ngtt server --store rabbitmq --pg-url … --order-queues classic`, the compiled CLI in dist/),
 * idle NGTT devices connected in steps (default 0, 100, 200, 400, 800; each has sent
 * FETCH_ORDERS, so it holds an order source: an AMQP channel and a consumer on its queue), and
 * at every step the gateway's memory after GC: the process is started with --expose-gc and
 * bench/lib/memory-probe.mjs, which collects garbage on SIGUSR2 and prints process.memoryUsage();
 * VmRSS is also read from /proc/<pid>/status. The slope is a least-squares fit over the steps.
 *
 * The broker is a PRIVATE RabbitMQ node (test/helpers/private-rabbitmq.ts: own node name,
 * ports on 127.0.0.1, data folder, deleted at the end), so the device queues never count against
 * the shared broker's file handles. Queues are classic v2 (2 file handles each; a quorum queue
 * reserves 3 even idle, and the shared broker has ~927): BENCH_QUEUES=quorum for a quorum series,
 * which the bench caps at 250 devices. PostgreSQL: a fresh database, dropped at the end.
 *
 *   npm run build && npx tsx bench/gateway-memory.ts      # → bench/results/gateway-memory.json
 *   BENCH_STEPS=0,50,100 npx tsx bench/gateway-memory.ts  # narrowed → bench/results/narrowed/
 *
 * Not a test: it asserts nothing, it measures.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import pg from 'pg';
import { encodeFrame, FrameType } from '../src/protocol/index.js';
import { startPrivateBroker } from '../test/helpers/private-rabbitmq.js';
import { BENCH_DIR, makePki, RESULTS_DIR, rssOf, sleep, writeResult } from './lib/common.js';

const DEFAULT_STEPS = [0, 100, 200, 400, 800];
const STEPS = (process.env.BENCH_STEPS ?? DEFAULT_STEPS.join(',')).split(',').map(Number);
const QUEUES = process.env.BENCH_QUEUES === 'quorum' ? 'quorum' : 'classic';
const QUORUM_CAP = 250;
const SETTLE_MS = 3_000;
const PG_ADMIN_URL = process.env.NGTT_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const narrowed = STEPS.join(',') !== DEFAULT_STEPS.join(',') || QUEUES !== 'classic';
const maxDevices = Math.max(...STEPS);
if (QUEUES === 'quorum' && maxDevices > QUORUM_CAP) throw new Error(`quorum queues reserve 3 file handles each: at most ${QUORUM_CAP} devices (BENCH_STEPS)`);
if (!existsSync(join(BENCH_DIR, '..', 'dist', 'src', 'cli', 'main.js'))) throw new Error('run `npm run build` first: the bench measures the compiled gateway');

const cleanups: (() => unknown)[] = [];
const cleanup = async () => {
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
};
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  const broker = await startPrivateBroker({ teardown: (fn) => cleanups.push(fn) });
  if (typeof broker === 'string') throw new Error(broker);

  const dbName = `ngtt_bench_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  cleanups.push(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  });
  const pgUrl = new URL(PG_ADMIN_URL);
  pgUrl.pathname = `/${dbName}`;

  const ids = Array.from({ length: maxDevices }, (_, i) => `mem-${i}`);
  const pki = await makePki(ids);
  const dir = await mkdtemp(join(tmpdir(), 'ngtt-bench-memory-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'ca.pem'), pki.ca.cert);
  await writeFile(join(dir, 's.crt'), pki.server.cert);
  await writeFile(join(dir, 's.key'), pki.server.key);

  const args = [
    '--expose-gc',
    '--import',
    join(BENCH_DIR, 'lib', 'memory-probe.mjs'),
    join(BENCH_DIR, '..', 'bin', 'ngtt.js'),
    'server',
    '--store', 'rabbitmq', '--amqp-url', broker.url, '--amqp-prefix', 'ngtt-bench-memory', '--order-queues', QUEUES,
    '--pg-url', pgUrl.toString(),
    '--ca', join(dir, 'ca.pem'), '--cert', join(dir, 's.crt'), '--key', join(dir, 's.key'),
    '--port', '0', '--https-port', '0', '--admin-port', '0',
  ];
  const gateway = spawn(process.execPath, args, { env: { ...process.env, NGTT_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => gateway.once('exit', () => resolve()));
  cleanups.push(async () => {
    gateway.kill('SIGTERM');
    await exited;
  });
  let stderr = '';
  const memoryLines: ((line: string) => void)[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    gateway.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      const m = /NGTT on [^:]+:(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
      let at;
      while ((at = stderr.indexOf('\n')) >= 0) {
        const line = stderr.slice(0, at);
        stderr = stderr.slice(at + 1);
        if (line.startsWith('NGTT-MEMORY ')) memoryLines.shift()?.(line.slice(12));
        else if (!/NGTT on /.test(line)) process.stderr.write(`gateway: ${line}\n`);
      }
    });
    void exited.then(() => reject(new Error(`gateway exited: ${stderr}`)));
  });

  /** Memory after GC: the probe's process.memoryUsage() and VmRSS, median of three. */
  const measure = async () => {
    const samples: { rss: number; heapUsed: number; external: number; vmRss: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const line = new Promise<string>((resolve) => memoryLines.push(resolve));
      gateway.kill('SIGUSR2');
      const m = JSON.parse(await line) as { rss: number; heapUsed: number; external: number; arrayBuffers: number; gc: boolean };
      if (!m.gc) throw new Error('the gateway was started without --expose-gc');
      samples.push({ ...m, vmRss: rssOf(gateway.pid!) });
      await sleep(300);
    }
    const mid = (k: 'vmRss' | 'heapUsed' | 'external') => samples.map((s) => s[k]).sort((a, b) => a - b)[1];
    return { vmRssMB: mid('vmRss') / 2 ** 20, heapUsedMB: mid('heapUsed') / 2 ** 20, externalMB: mid('external') / 2 ** 20 };
  };

  const sockets: tls.TLSSocket[] = [];
  let closedByGateway = 0;
  let finished = false;
  cleanups.push(() => {
    finished = true;
    sockets.forEach((s) => s.destroy());
  });
  /** Connects devices until `n` are connected, 50 handshakes at a time; each sends FETCH_ORDERS and a PING and waits for the echo. */
  const connectUpTo = async (n: number) => {
    while (sockets.length < n) {
      const batch = ids.slice(sockets.length, Math.min(n, sockets.length + 50));
      sockets.push(
        ...(await Promise.all(
          batch.map(
            (id) =>
              new Promise<tls.TLSSocket>((resolve, reject) => {
                const c = pki.devices[id];
                const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: c.cert, key: c.key }, () => {
                  s.write(encodeFrame(0, FrameType.FETCH_ORDERS));
                  s.write(encodeFrame(1, FrameType.PING));
                  s.once('data', () => resolve(s));
                });
                s.once('error', reject);
                s.on('close', () => finished || closedByGateway++);
              }),
          ),
        )),
      );
    }
  };

  interface Point {
    devices: number;
    connectMs: number;
    closedByGateway: number;
    vmRssMB: number;
    heapUsedMB: number;
    externalMB: number;
  }
  const points: Point[] = [];
  for (const devices of [...STEPS].sort((a, b) => a - b)) {
    const t0 = Date.now();
    await connectUpTo(devices);
    const connectMs = Date.now() - t0;
    await sleep(SETTLE_MS); // order sources open (queue declare + consume) after the first reply
    const m = await measure();
    points.push({ devices, connectMs, closedByGateway, vmRssMB: +m.vmRssMB.toFixed(2), heapUsedMB: +m.heapUsedMB.toFixed(2), externalMB: +m.externalMB.toFixed(2) });
    console.log(JSON.stringify(points.at(-1)));
  }

  /** Least-squares slope (KB per device) and intercept (MB) of y over devices. */
  const fit = (key: 'vmRssMB' | 'heapUsedMB' | 'externalMB') => {
    const xs = points.map((p) => p.devices);
    const ys = points.map((p) => p[key]);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    const slope = xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
    const ssTot = ys.reduce((a, y) => a + (y - my) ** 2, 0);
    const ssRes = ys.reduce((a, y, i) => a + (y - (my + slope * (xs[i] - mx))) ** 2, 0);
    return { kbPerDevice: +((slope * 1024).toFixed(1)), interceptMB: +(my - slope * mx).toFixed(1), r2: +(1 - ssRes / ssTot).toFixed(4) };
  };
  const marginal = points.slice(1).map((p, i) => ({
    from: points[i].devices,
    to: p.devices,
    vmRssKbPerDevice: +(((p.vmRssMB - points[i].vmRssMB) * 1024) / (p.devices - points[i].devices)).toFixed(1),
    heapUsedKbPerDevice: +(((p.heapUsedMB - points[i].heapUsedMB) * 1024) / (p.devices - points[i].devices)).toFixed(1),
  }));
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    memoryGB: +(totalmem() / 2 ** 30).toFixed(1),
    setup:
      'one gateway process (compiled CLI) --store rabbitmq --pg-url, private RabbitMQ node and PostgreSQL on the same machine; idle NGTT devices (TLS, FETCH_ORDERS: one order source each), connected in steps in the same process; memory after GC (--expose-gc, two gc() calls), median of three',
    orderQueues: QUEUES,
    settleMs: SETTLE_MS,
    narrowed,
    points,
    slope: { vmRss: fit('vmRssMB'), heapUsed: fit('heapUsedMB'), external: fit('externalMB') },
    marginal,
  };
  if (narrowed) mkdirSync(join(RESULTS_DIR, 'narrowed'), { recursive: true });
  const file = writeResult(narrowed ? `narrowed/gateway-memory-${QUEUES}` : 'gateway-memory', result);
  console.log(JSON.stringify(result.slope), `\nwritten ${file}`);
} finally {
  await cleanup();
}
