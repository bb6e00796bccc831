/** `ngtt device` as a user runs it: a real process against a real server over mutual TLS. */
import { spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { until } from '../helpers/wait.js';
import { createDevDevice, createDevPki } from '../../src/pki/index.js';
import { startServer } from '../../src/server/index.js';
import { NGTT } from '../helpers/cli.js';

const dir = await mkdtemp(join(tmpdir(), 'ngtt-device-cli-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const pkiDir = join(dir, 'pki');
const pki = await createDevPki(pkiDir);
await createDevDevice(pkiDir, 'dev-7');
const server = await startServer({ tls: { ca: pki.ca.cert, ...pki.server }, ngttPort: 0, httpsPort: 0, adminPort: 0 });
t.teardown(() => server.close());

function ngtt(...args: string[]) {
  const child = spawn(process.execPath, [...NGTT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (err += c));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exit, out: () => out, err: () => err };
}


t.test('prints and acknowledges orders, pushes values, stops on Ctrl-C', async (t) => {
  const id = await server.enqueueOrder('dev-7', [{ orders: [{ type: 'write', path: 'W1', value: 7 }], disposition: 0 }]);
  const p = ngtt('device', '--pki', pkiDir, '--id', 'dev-7', '--port', String(server.ngttPort), '--push', 'W1=7', '--push', 'u2=hello');
  t.teardown(() => p.child.kill('SIGKILL'));
  await until(() => p.out().includes(`acknowledged ${id}`), 'the order to be acknowledged', 20_000);
  await until(() => p.out().includes('pushed u2="hello": stored by the server'), 'the pushes', 20_000);
  t.match(p.out(), new RegExp(`order ${id} \\(tid \\d+\\): \\{"type":"write","path":"W1","value":7\\}`));
  // The CONFIRM is on its way once the line is printed: poll the store until it lands.
  let state: string | undefined;
  const deadline = Date.now() + 10_000;
  while ((state = (await server.store.getOrder(id))?.state) !== 'confirmed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(state, 'confirmed');
  const data = await server.store.readData('dev-7', {});
  t.same(data.map((s) => [s.path, s.values[0][1]]).sort(), [['W1', 7], ['u2', 'hello']]);
  p.child.kill('SIGINT');
  t.equal(await p.exit, 0);
  t.notMatch(p.out(), /reconnecting/, 'a requested close is not reported as a drop');
});

t.test('--reject refuses orders for good', async (t) => {
  const id = await server.enqueueOrder('dev-7', [{ orders: [{ type: 'read', path: 'W1' }], disposition: 0 }]);
  const p = ngtt('device', '--pki', pkiDir, '--id', 'dev-7', '--port', String(server.ngttPort), '--reject');
  t.teardown(() => p.child.kill('SIGKILL'));
  await until(() => p.out().includes(`rejected ${id}`), 'the rejection', 20_000);
  let state: string | undefined;
  const deadline = Date.now() + 10_000;
  while ((state = (await server.store.getOrder(id))?.state) !== 'rejected' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(state, 'rejected');
  p.child.kill('SIGINT');
  t.equal(await p.exit, 0);
});

t.test('user mistakes are one line and a non-zero exit', async (t) => {
  const missing = ngtt('device', '--pki', pkiDir, '--id', 'nobody', '--port', String(server.ngttPort));
  t.equal(await missing.exit, 1);
  t.match(missing.err(), /^ngtt device: no certificate for nobody in .*; create one with: ngtt certs device nobody/);
  t.notMatch(missing.err(), /\n\s+at /, 'no stack trace');
  const refused = ngtt('device', '--pki', pkiDir, '--id', 'dev-7', '--port', '1', '--once');
  t.equal(await refused.exit, 1);
  t.match(refused.err(), /cannot connect to 127\.0\.0\.1:1 as dev-7: .*ECONNREFUSED/);
  const usage = ngtt('device', '--push', 'novalue', '--id', 'dev-7', '--pki', pkiDir);
  t.equal(await usage.exit, 2);
});

t.test('an encrypted key (a password we do not have) is one clear line, for device and server', async (t) => {
  const device = await createDevDevice(pkiDir, 'dev-enc');
  const encrypted = createPrivateKey(device.key).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'secret' }) as string;
  const keyPath = join(dir, 'encrypted.key');
  await writeFile(keyPath, encrypted, { mode: 0o600 });
  const caPath = join(pkiDir, 'ca.crt');
  const dev = ngtt('device', '--ca', caPath, '--cert', device.certPath, '--key', keyPath, '--port', String(server.ngttPort), '--once');
  t.equal(await dev.exit, 1);
  t.match(dev.err(), /^ngtt device: the private key is encrypted \(or its password is wrong\)/);
  const srv = ngtt('server', '--ca', caPath, '--cert', join(pkiDir, 'server.crt'), '--key', keyPath, '--memory', '--port', '0', '--https-port', '0', '--admin-port', '0');
  t.equal(await srv.exit, 1);
  t.match(srv.err(), /^ngtt server: the private key is encrypted/);
  t.notMatch(srv.err(), /\n\s+at /, 'no stack trace');
});
