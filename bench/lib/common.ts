/**
 * Shared by the protocol benchmarks: clock, statistics, the PKI, results files, the benchmark's
 * own TLS mosquitto, and a counting TCP proxy for bytes on the wire. Loopback only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCA, createDeviceCertificate, createServerCertificate, type CertificateAndKey } from '../../src/pki/index.js';

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const RESULTS_DIR = join(BENCH_DIR, 'results');

/**
 * Milliseconds on CLOCK_MONOTONIC (process.hrtime). The clock is system-wide on Linux, so
 * timestamps taken in the backend child and in the device process compare directly.
 */
export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Distribution {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function distribution(samples: number[]): Distribution {
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  };
}

/** Medians, field by field, of several runs' distributions. */
export function medianDistribution(ds: Distribution[]): Distribution {
  const keys = ['n', 'p50', 'p90', 'p99', 'max', 'mean'] as const;
  return Object.fromEntries(keys.map((k) => [k, median(ds.map((d) => d[k]))])) as unknown as Distribution;
}

export const fmt = (n: number, digits = 2): string =>
  !Number.isFinite(n) ? 'n/a' : Math.abs(n) >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);

export function writeResult(name: string, value: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
  return file;
}

/** Resident memory of a process (bytes), from /proc/PID/status. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

export function environment() {
  return { node: process.version, date: new Date().toISOString(), cpus: (globalThis as any).navigator?.hardwareConcurrency ?? null };
}

export interface BenchPki {
  ca: CertificateAndKey;
  server: CertificateAndKey;
  /** Device certificates by device id. */
  devices: Record<string, CertificateAndKey>;
}

/** The MQTT backend's client certificate (mosquitto wants clientAuth, which server certificates lack). */
export const BACKEND_ID = 'bench-backend';

/** A CA, a server certificate for 127.0.0.1/localhost, and one certificate per device id. */
export async function makePki(deviceIds: string[]): Promise<BenchPki> {
  const ca = await createCA({ commonName: 'NGTT benchmark CA' });
  const server = await createServerCertificate(ca, { hosts: ['127.0.0.1', 'localhost'] });
  const devices: Record<string, CertificateAndKey> = {};
  for (const id of [...deviceIds, BACKEND_ID]) devices[id] = await createDeviceCertificate(ca, { deviceId: id, environment: 2 });
  return { ca, server, devices };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export interface TlsMosquitto {
  port: number;
  /** The broker's process id (its memory is read from /proc by the fleet benchmark). */
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a private mosquitto with one TLS listener on 127.0.0.1 that requires a client
 * certificate from the benchmark's CA (TLS against TLS, like NGTT). In-memory (no persistence):
 * mosquitto writes its persistence file only periodically, so it would not make QoS 1 durable
 * per message anyway. Inflight/queue limits are raised so they do not throttle the pipelined
 * uploads. Null when mosquitto is not installed.
 */
export async function startTlsMosquitto(pki: BenchPki): Promise<TlsMosquitto | null> {
  const dir = mkdtempSync(join(tmpdir(), 'ngtt-bench-mqtt-'));
  writeFileSync(join(dir, 'ca.crt'), pki.ca.cert);
  writeFileSync(join(dir, 'server.crt'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key, { mode: 0o600 });
  const port = await freePort();
  writeFileSync(
    join(dir, 'mosquitto.conf'),
    [
      'persistence false',
      'log_dest none',
      `listener ${port} 127.0.0.1`,
      `cafile ${join(dir, 'ca.crt')}`,
      `certfile ${join(dir, 'server.crt')}`,
      `keyfile ${join(dir, 'server.key')}`,
      'require_certificate true',
      'tls_version tlsv1.3',
      'allow_anonymous true',
      'set_tcp_nodelay true', // as NGTT's sockets: no Nagle delay on small messages
      'max_inflight_messages 1000',
      'max_queued_messages 100000',
      '',
    ].join('\n'),
  );
  // Run as root, mosquitto drops to the `mosquitto` user: let that user read the temp dir.
  if (process.getuid?.() === 0) {
    const r = spawnSync('id', ['-u', 'mosquitto'], { encoding: 'utf8' });
    const uid = Number(r.stdout.trim());
    if (r.status === 0 && Number.isInteger(uid)) for (const f of ['', 'ca.crt', 'server.crt', 'server.key', 'mosquitto.conf']) chownSync(join(dir, f), uid, -1);
  }
  let child: ChildProcess;
  try {
    child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const failed = new Promise<null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('exit', () => resolve(null));
  });
  const ready = waitForPort(port, 5000).then(() => true);
  const ok = await Promise.race([ready, failed]);
  if (!ok) {
    if (stderr) console.warn(`mosquitto: ${stderr.trim()}`);
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  return {
    port,
    pid: child.pid!,
    stop: async () => {
      process.off('exit', killOnExit);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** "mosquitto version 2.0.18", or null when it is not installed. */
export function mosquittoVersion(): string | null {
  const r = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' });
  return /mosquitto version [\d.]+/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[0] ?? null;
}

/**
 * A TCP proxy on 127.0.0.1 that counts the bytes going each way: what the device's link
 * carries, TLS records and TCP payload (no IP/TCP headers).
 */
export class CountingProxy {
  up = 0;
  down = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      this.sockets.add(client).add(upstream);
      client.on('data', (d) => {
        this.up += d.length;
        if (!upstream.write(d)) client.pause();
      });
      upstream.on('drain', () => client.resume());
      upstream.on('data', (d) => {
        this.down += d.length;
        if (!client.write(d)) upstream.pause();
      });
      client.on('drain', () => upstream.resume());
      const end = () => (client.destroy(), upstream.destroy());
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  reset(): void {
    this.up = this.down = 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server?.close(r));
  }
}

/** mqtt.js leaves Nagle on; NGTT's device socket turns it off. Same footing for the comparison. */
export function noDelay<T extends { stream: unknown }>(client: T): T {
  (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  return client;
}
