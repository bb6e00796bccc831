/**
 * `ngtt server` as an operator runs it: the admission flags reach the listener and /metrics
 * reports them, and refusals show up there.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createDevPki } from '../../src/pki/index.js';
import { NGTT } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';

const dir = await mkdtemp(join(tmpdir(), 'ngtt-server-cli-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
await createDevPki(join(dir, 'pki'));

t.test('admission flags are applied and visible in /metrics', async (t) => {
  const args = ['server', '--pki', join(dir, 'pki'), '--memory', '--port', '0', '--https-port', '0', '--admin-port', '0'];
  args.push('--max-connections', '500', '--max-handshakes', '7', '--max-handshakes-per-source', '3', '--handshake-timeout', '30', '--dedupe-window', '10', '--counter-retention', '60');
  const child = spawn(process.execPath, [...NGTT, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NGTT_LOG_LEVEL: 'warn' } });
  t.teardown(() => child.kill('SIGKILL'));
  let err = '';
  let log = '';
  child.stderr.on('data', (c) => (err += c));
  child.stdout.on('data', (c) => (log += c));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await until(() => /admin on [\d.]+:\d+/.test(err), 'the server to listen', 20_000);
  const ngttPort = Number(/NGTT on [\d.]+:(\d+)/.exec(err)![1]);
  const adminPort = Number(/admin on [\d.]+:(\d+)/.exec(err)![1]);
  const metrics = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()).split('\n');
  const value = (lines: string[], name: string) => Number(lines.find((l) => l.startsWith(`${name} `))?.split(' ')[1]);

  const lines = await metrics();
  t.equal(value(lines, 'ngtt_admission_limit{limit="maxConnections"}'), 500);
  t.equal(value(lines, 'ngtt_admission_limit{limit="maxPendingHandshakes"}'), 7);
  t.equal(value(lines, 'ngtt_admission_limit{limit="maxPendingHandshakesPerSource"}'), 3);
  t.equal(value(lines, 'ngtt_admission_limit{limit="handshakeTimeoutMs"}'), 30_000);

  const stalled = [...Array(5)].map(() => net.connect({ host: '127.0.0.1', port: ngttPort, localAddress: '127.0.0.9' }).on('error', () => {}));
  t.teardown(() => stalled.forEach((s) => s.destroy()));
  await until(async () => value(await metrics(), 'ngtt_connections_refused_total{port="ngtt",reason="max-handshakes-per-source"}') === 2, 'two of five refused (3 per source)', 10_000);
  t.equal(value(await metrics(), 'ngtt_tls_handshakes_pending{port="ngtt"}'), 3);
  await until(() => log.includes('connection refused by admission control'), 'the refusal to be logged (pino, stdout)');
  t.equal(log.split('\n').filter((l) => l.includes('connection refused by admission control')).length, 1, 'once, not per refusal');

  child.kill('SIGINT');
  t.equal(await exit, 0, 'stops cleanly');
});
