/**
 * `ngtt server` in a child process (so a test can SIGKILL it), with the ports it printed.
 * Used by the fleet tests: gateways and sinks of one prefix, on RabbitMQ and PostgreSQL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NGTT, ROOT } from './cli.js';
import { killOnExit } from './reap.js';
import type { TestPki } from './server-fixture.js';

export interface GatewayProcess {
  name: string;
  ngttPort: number;
  httpsPort: number;
  adminPort: number;
  child: ChildProcess;
  exited: Promise<void>;
  /** SIGTERM (clean stop: unsettled orders requeued, sink callbacks finished) and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait: nothing finishes. */
  kill(): Promise<void>;
}

/** Starts `ngtt server <args> --port 0 --https-port 0 --admin-port 0`; resolves once it listens. */
export async function startGatewayProcess(name: string, args: string[], timeoutMs = 30_000): Promise<GatewayProcess> {
  const argv = [...NGTT, 'server', ...args, '--port', '0', '--https-port', '0', '--admin-port', '0'];
  // stdout piped, not inherited: an orphaned gateway would otherwise hold tap's pipe open.
  const child = spawn(process.execPath, argv, { cwd: ROOT, env: { ...process.env, NGTT_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.resume();
  const forget = killOnExit(() => child.kill('SIGKILL'));
  const exited = new Promise<void>((resolve) => child.once('exit', () => (forget(), resolve())));
  let err = '';
  const ports = await new Promise<number[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const m = /NGTT on [^:]+:(\d+), HTTPS on :(\d+), admin on [^:]+:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve([Number(m[1]), Number(m[2]), Number(m[3])]);
      }
    });
    void exited.then(() => (clearTimeout(timer), reject(new Error(`${name} exited: ${err}`))));
  });
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  return { name, ngttPort: ports[0], httpsPort: ports[1], adminPort: ports[2], child, exited, stop: () => signal('SIGTERM'), kill: () => signal('SIGKILL') };
}

/** The admin API of a gateway: GET, or the method given with a JSON body. */
export async function adminCall<T = Record<string, unknown>>(g: { adminPort: number }, path: string, method = 'GET', body?: unknown): Promise<T> {
  const init: RequestInit = body === undefined ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const r = await fetch(`http://127.0.0.1:${g.adminPort}/v1/admin${path}`, init);
  if (!r.ok) throw new Error(`admin ${method} ${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json() as Promise<T>;
}

/** The server's PEM files in a fresh temp folder, as `ngtt server --ca --cert --key` reads them; `remove` deletes it. */
export async function writeServerPem(pki: TestPki): Promise<{ args: string[]; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ngtt-server-pem-'));
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
  await writeFile(files.ca, pki.ca.cert);
  await writeFile(files.cert, pki.server.cert);
  await writeFile(files.key, pki.server.key, { mode: 0o600 });
  return { args: ['--ca', files.ca, '--cert', files.cert, '--key', files.key], remove: () => rm(dir, { recursive: true, force: true }) };
}
