/**
 * The package as a user gets it: build, `npm pack`, install the tarball into a project outside
 * the repository (offline, see helpers/consumer-project.ts), then use it (a) from an ES module,
 * (b) from CommonJS, (c) from a strict TypeScript project compiled against the shipped .d.ts and
 * (d) on the command line; and run the README's examples, compiled by that project, against a
 * real server over mutual TLS. No optional peer (fastify, amqplib, @statelyai/inspect) is
 * installed: a device-only install.
 */
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import t from 'tap';
import { startServer } from '../../src/server/index.js';
import { ROOT, cleanEnv, copyNativeAddon, exec, writeConsumerProject } from '../helpers/consumer-project.js';
import { until } from '../helpers/wait.js';

t.setTimeout(300_000);
const started = Date.now();
const node = process.execPath;
const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const must = async (what: string, p: ReturnType<typeof exec>) => {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
};

// ---- build, pack, install ------------------------------------------------------------------

await must('npm run build', exec(node, [tsc, '-p', 'tsconfig.build.json'], ROOT));
const work = await mkdtemp(join(tmpdir(), 'ngtt-consumer-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const packed = await must('npm pack', exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT));
const [pack] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
const files = pack!.files.map((f) => f.path);

const app = join(work, 'app');
await cp(join(import.meta.dirname, 'fixtures'), app, { recursive: true });
await cp(join(ROOT, 'examples'), join(app, 'examples'), { recursive: true });
await writeConsumerProject(app, { tarball: join(work, pack!.filename), dependencies: ['xstate'], devDependencies: ['@types/node'] });
const install = await must('npm ci --offline', exec('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], app));
await copyNativeAddon(app);
const installed = join(app, 'node_modules');
t.comment(`built, packed and installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);

t.test('the tarball holds the build, the bin, the docs and the sources of the maps; no tests or tooling', async (t) => {
  for (const f of ['package.json', 'README.md', 'LICENSE', 'bin/ngtt.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/index.d.ts.map', 'dist/src/index.js.map', 'dist/machines/index.js', 'dist/src/cli/main.js', 'docs/protocol.md', 'docs/postgres.md', 'src/index.ts', 'src/server/postgres/migrations/001_initial.sql', 'dist/src/live/index.js', 'src/live/assets/live.html', 'src/live/assets/live.js', 'src/live/assets/live.css']) {
    t.ok(files.includes(f), `ships ${f}`);
  }
  const unwanted = files.filter((f) => /^(test|bench|examples|scripts|\.ci|node_modules)\/|tsbuildinfo|^tsconfig|package-lock/.test(f));
  t.same(unwanted, [], 'nothing a user does not need');
});

t.test('a device-only install: no server, test, build or global-patching packages, no EBADENGINE', async (t) => {
  const present = (await readdir(installed)).concat((await readdir(join(installed, '@statelyai')).catch(() => [])).map((n) => `@statelyai/${n}`));
  for (const name of ['fastify', 'amqplib', 'pg', 'prom-client', '@statelyai/inspect', 'mermaid', 'playwright-core', 'tsx', 'esbuild', 'tap', 'typescript', 'reflect-metadata', 'tsyringe', 'ws']) {
    t.notOk(present.includes(name), `${name} is not installed`);
  }
  t.notMatch(install.stderr + install.stdout, /EBADENGINE/);
});

t.test('(a) an ES module imports NgttDevice, the codec and a machine, and uses them', async (t) => {
  const r = await must('node consumer.mjs', exec(node, ['consumer.mjs'], app));
  t.match(JSON.parse(r.stdout), { deviceId: 'esm-1', pending: 1, order: 'acked', orderId: 'order-1', executed: ['W1'] });
});

t.test('(b) CommonJS require()s the same (require(esm), Node ≥ 20.19)', async (t) => {
  const r = await must('node consumer.cjs', exec(node, ['consumer.cjs'], app));
  t.match(JSON.parse(r.stdout), { connection: 'disconnected', order: 'rejected', reports: ['ORDER.DONE'] });
  t.notMatch(r.stderr, /Error/);
});

t.test('(c) a strict NodeNext TypeScript project type-checks against the shipped .d.ts, and its output runs', async (t) => {
  const errors = (out: string) => out.split('\n').filter((l) => /error TS\d+/.test(l));
  const [r, controlRun] = await Promise.all([exec(node, [tsc, '-p', '.', '--listFiles'], app), exec(node, [tsc, '-p', 'tsconfig.xstate.json'], app)]);
  const found = errors(r.stdout);
  // A crashed compiler prints no diagnostics at all: that must not read as "no errors".
  t.notMatch(r.stdout + r.stderr, /Debug Failure|^\s+at \S+ \(/m, 'tsc ran to the end');
  t.match(r.stdout, /node_modules\/ngtt\//, 'tsc listed the files it checked');
  t.same(found.filter((e) => !e.startsWith('node_modules/xstate/')), [], "no error in ngtt's declarations or in the consumer's code");
  // xstate 5's own declarations do not pass exactOptionalPropertyTypes with skipLibCheck off, in
  // any project that imports xstate: the consumer may show those, and nothing more.
  const control = errors(controlRun.stdout);
  t.same(found.filter((e) => e.startsWith('node_modules/xstate/')), control, 'xstate reports what it reports in a project of its own');
  const fromPackage = r.stdout.split('\n').filter((l) => l.includes('/node_modules/ngtt/'));
  t.ok(fromPackage.some((f) => f.endsWith('/node_modules/ngtt/dist/src/index.d.ts')), 'the types come from dist/');
  t.same(fromPackage.filter((f) => !f.endsWith('.d.ts')), [], 'no .ts source of the package is compiled');
  const run = await must('node out/consumer.js', exec(node, ['out/consumer.js'], app));
  t.match(JSON.parse(run.stdout), { deviceId: 'ts-1', environment: 2, pending: 2, refused: true, frames: [[7, 0]], order: 'acked', reports: ['ORDER.EXECUTING', 'ORDER.DONE'], spool: 0 });
});

t.test('(d) the ngtt command from node_modules/.bin, without tsx and without the optional peers', async (t) => {
  const ngtt = join(installed, '.bin', 'ngtt');
  const help = await must('ngtt --help', exec(ngtt, ['--help'], app));
  t.match(help.stdout, /Usage: ngtt <command>/);
  t.match((await must('ngtt server --help', exec(ngtt, ['server', '--help'], app))).stdout, /Usage: ngtt server/);
  // What needs a peer says which one, and how to install it, in one line.
  for (const args of [['server', '--memory', '--port', '0'], ['demo', '--duration', '1']]) {
    const r = await exec(ngtt, args, app);
    t.equal(r.code, 2, `ngtt ${args[0]} exits 2`);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.match(r.stderr, new RegExp(`ngtt ${args[0]}: needs fastify and @fastify/multipart, optional peer dependencies of ngtt that are not installed: npm install fastify@5 @fastify/multipart@10`));
  }
  t.notOk(existsSync(join(app, 'data')), 'the failed demo created no data');
  // The PKI commands need no peer: they make the certificates of the examples below.
  await must('ngtt certs init', exec(ngtt, ['certs', 'init', 'pki'], app));
  await must('ngtt certs device', exec(ngtt, ['certs', 'device', 'boiler-1', '--dir', 'pki'], app));
  t.ok(existsSync(join(app, 'pki', 'devices', 'boiler-1.crt')));
});

t.test('(e) ngtt/live serves its page from the installed package; without mermaid it says how to get the charts', async (t) => {
  const script = `import { startLiveView } from 'ngtt/live';
const live = await startLiveView();
const get = async (p) => { const r = await fetch(new URL(p, live.url)); return { status: r.status, text: await r.text() }; };
const page = await get('/'), js = await get('/live.js'), mermaid = await get('/mermaid.min.js');
await live.close();
console.log(JSON.stringify({ url: live.url, page: page.status, title: /<title>NGTT live view/.test(page.text), js: js.status, mermaid: mermaid.status, hint: mermaid.text }));`;
  const r = await must('node live.mjs', exec(node, ['--input-type=module', '-e', script], app));
  const out = JSON.parse(r.stdout) as { url: string; page: number; title: boolean; js: number; mermaid: number; hint: string };
  t.match(out, { page: 200, title: true, js: 200, mermaid: 404 });
  t.match(out.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  t.match(out.hint, /npm install mermaid@11/);
});

t.test("the README's examples, compiled by the consumer, against a real server (mutual TLS, 127.0.0.1)", async (t) => {
  const pem = (f: string) => readFile(join(app, 'pki', f), 'utf8');
  const server = await startServer({
    tls: { ca: await pem('ca.crt'), cert: await pem('server.crt'), key: await pem('server.key') },
    ngttPort: 0,
    httpsPort: 0,
    adminPort: null,
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => server.close());
  const env = cleanEnv({ NGTT_HOST: '127.0.0.1', NGTT_PORT: String(server.ngttPort), NGTT_HTTPS_PORT: String(server.httpsPort) });
  const values = async (path: string) => (await server.store.readData('boiler-1', { path })).flatMap((s) => s.values.map((v) => v[1]));
  const messages = async () => (await server.store.readLogs('boiler-1')).map((l) => l.message);

  // examples/device.ts: NgttDevice with handlers, push, configuration, logs; stopped by SIGTERM.
  const order = await server.enqueueOrder('boiler-1', [
    { orders: [{ type: 'write', path: 'f3', value: 7 }], disposition: 0 },
    { orders: [{ type: 'read', path: 'f3' }, { type: 'read', path: 'nope' }], disposition: 0 },
  ]);
  const device = start('out/examples/device.js', app, env);
  await until(async () => (await values('f2')).includes(21.5), 'the pushed value on the server', 20_000);
  await until(async () => (await server.store.getOrder(order))?.state === 'rejected', 'the order settled', 20_000);
  t.match(await server.store.getOrder(order), { state: 'rejected', reason: /nope/ }, 'a failed read rejects the order, with the reason');
  t.same(await values('f3'), [7], 'the value written by the order was read back and uploaded');
  await until(async () => (await messages()).includes('configuration'), 'the shipped log records', 20_000);
  t.ok(server.counters('boiler-1').logRecords >= 3, 'the server reports the shipped records');
  device.child.kill('SIGTERM');
  t.equal(await device.exit, 0, 'SIGTERM: the device closes and the process ends by itself');
  t.ok((await messages()).includes('stopping'), 'a record logged just before close() was shipped');
  t.match(device.out(), /"msg":"configuration"/, 'the logger also writes to stdout');

  // examples/connection.ts: NgttConnection alone.
  const second = await server.enqueueOrder('boiler-1', [{ orders: [{ type: 'read', path: 'W1' }], disposition: 0 }]);
  const connection = start('out/examples/connection.js', app, env);
  await until(async () => (await server.store.getOrder(second))?.state === 'confirmed', 'the order acknowledged', 20_000);
  await until(async () => (await values('W1')).includes(42), 'the synced value', 20_000);
  await until(async () => (await messages()).includes('started'), 'the streamed log record', 20_000);
  connection.child.kill('SIGTERM');
  t.equal(await connection.exit, 0);
  t.match(connection.out(), new RegExp(`order ${second} `));

  // examples/minijson.ts.
  const minijson = await must('minijson example', exec(node, ['out/examples/minijson.js'], app));
  t.match(minijson.stdout, /^\d+ bytes \[\{"path":"W1","values":\[\[\d+,21\.5\]\]\}\]\nrefused: /);
});

t.test('timing', async (t) => {
  t.comment(`consumer test took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.pass();
});

function start(script: string, cwd: string, env: NodeJS.ProcessEnv) {
  const child = spawn(node, [script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c));
  child.stderr.on('data', (c: Buffer) => (out += c));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => void child.kill('SIGKILL'));
  return { child, exit, out: () => out };
}
