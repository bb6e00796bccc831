import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { runBaob } from '../../src/cli/baob.js';
import { runCerts } from '../../src/cli/certs.js';
import { runOrder } from '../../src/cli/order.js';
import { runServer } from '../../src/cli/server.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';

/** Runs a command in-process, capturing what it prints. */
async function run(command: (argv: string[]) => Promise<number>, ...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(' '));
  console.error = (...a: unknown[]) => err.push(a.join(' '));
  try {
    const code = await command(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    Object.assign(console, { log, error });
  }
}

const dir = await mkdtemp(join(tmpdir(), 'ngtt-cli-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('ngtt certs', async (t) => {
  const pki = join(dir, 'pki');
  t.match(await run(runCerts, 'init', pki), { code: 0, out: /created CA/ });
  t.match(await run(runCerts, 'init', pki), { code: 1, err: /already exists \(use --force/ });
  t.match(await run(runCerts, 'init', pki, '--force'), { code: 0 });
  t.match(await run(runCerts, 'device', 'dev-9', '--dir', pki, '--environment', '1'), { code: 0 });
  t.match(await run(runCerts, 'show', join(pki, 'devices', 'dev-9.crt')), { code: 0, out: /DeviceID: dev-9\nEnvironment: 1/ });
  t.match(await run(runCerts, 'show', join(pki, 'missing.crt')), { code: 1, err: /ENOENT|no such file/ });
  t.match(await run(runCerts, 'device', 'x', '--dir', pki, '--environment', '7'), { code: 2, err: /--environment must be/ });
  t.match(await run(runCerts, 'nonsense'), { code: 2 });
  t.match(await run(runCerts, '--help'), { code: 0, out: /Usage/ });
  for (const r of [await run(runCerts, 'show', join(pki, 'ca.key')), await run(runCerts, 'device', 'x', '--dir', join(dir, 'nope'))]) {
    t.equal(r.code, 1);
    t.equal(r.err.split('\n').length, 1, `one line, no stack trace: ${r.err}`);
  }
});

t.test('ngtt order against the admin API', async (t) => {
  const server = await startTestServer(await makePki());
  t.teardown(() => server.close());
  const admin = ['--admin', `http://127.0.0.1:${server.adminPort}`];
  const sent = await run(runOrder, 'send', 'dev-c', '{"orders": [{"type": "read", "path": "W1"}]}', ...admin);
  t.equal(sent.code, 0);
  const id = sent.out.trim();
  t.equal((await server.store.getOrder(id))?.deviceId, 'dev-c');
  t.match(await run(runOrder, 'list', 'dev-c', ...admin), { code: 0, out: new RegExp(`${id}\\s+queued`) });
  t.match(await run(runOrder, 'send', 'dev-c', '[{"orders": [{"type": "nope"}]}]', ...admin), { code: 1, err: /400: .*unknown order type/ });
  t.match(await run(runOrder, 'send', 'dev-c', '[{', ...admin), { code: 2, err: /not valid JSON/ });
  t.match(await run(runOrder, 'list', 'dev-c', '--admin', 'http://127.0.0.1:1'), { code: 1, err: /cannot reach the admin API/ });
});

t.test('ngtt order list shows whether message orders were received', async (t) => {
  const server = await startTestServer(await makePki());
  t.teardown(() => server.close());
  const admin = ['--admin', `http://127.0.0.1:${server.adminPort}`];
  await server.enqueueOrder('dev-m', [{ orders: [{ type: 'message', uuid: 'hello-1' }, { type: 'message', uuid: 'hello-2' }], disposition: 0 }]);
  await server.store.recordMessageReceipt('dev-m', 'hello-2');
  const listed = await run(runOrder, 'list', 'dev-m', ...admin);
  t.equal(listed.code, 0);
  t.match(listed.out, /\n {4}message hello-1 {2}not received yet\n {4}message hello-2 {2}received \d{4}-\d\d-\d\dT/);
});

t.test('ngtt baob put, get, list, delete', async (t) => {
  const server = await startTestServer(await makePki(), { maxBaobBytes: 1000 });
  t.teardown(() => server.close());
  const admin = ['--admin', `http://127.0.0.1:${server.adminPort}`];
  const file = join(dir, 'setpoints.json');
  await writeFile(file, '{"W1": 21}');
  t.match(await run(runBaob, 'put', 'dev-b', 'setpoints.json', file, ...admin), { code: 0, out: 'setpoints.json version 1 (10 bytes)' });
  await writeFile(file, '{"W1": 22}');
  t.match(await run(runBaob, 'put', 'dev-b', 'setpoints.json', file, ...admin), { code: 0, out: /version 2/ });
  t.equal((await server.store.getBaob('dev-b', 'setpoints.json'))?.version, 2);
  t.match(await run(runBaob, 'list', 'dev-b', ...admin), { code: 0, out: /^setpoints\.json {2}version 2 {2}10 bytes/ });
  const out = join(dir, 'fetched.json');
  t.match(await run(runBaob, 'get', 'dev-b', 'setpoints.json', '--out', out, ...admin), { code: 0, err: /version 2/ });
  t.equal(await readFile(out, 'utf8'), '{"W1": 22}');
  t.match(await run(runBaob, 'delete', 'dev-b', 'setpoints.json', ...admin), { code: 0 });
  t.match(await run(runBaob, 'list', 'dev-b', ...admin), { code: 0, out: 'no BAOBs for dev-b' });

  await writeFile(file, Buffer.alloc(2000));
  t.match(await run(runBaob, 'put', 'dev-b', 'big', file, ...admin), { code: 1, err: /413: request body larger than 1000 bytes/ });
  t.match(await run(runBaob, 'get', 'dev-b', 'nothing', ...admin), { code: 1, err: /404: no BAOB "nothing"/ });
  t.match(await run(runBaob, 'put', 'dev-b', 'x', join(dir, 'absent'), ...admin), { code: 1, err: /cannot read .*ENOENT/ });
  t.match(await run(runBaob, 'put', 'dev-b', 'x', ...admin), { code: 2, err: /needs a device id, a key and a file/ });
  t.match(await run(runBaob, 'list', 'dev-b', '--admin', 'http://127.0.0.1:1'), { code: 1, err: /cannot reach the admin API/ });
});

t.test('ngtt server: user mistakes are one line', async (t) => {
  t.match(await run(runServer, '--trusted-proxy', '10.0.0.300', '--memory'), { code: 2, err: /--trusted-proxy: .*not an IP address or CIDR/ });
  t.match(await run(runServer, '--pki', join(dir, 'absent')), { code: 1, err: /does not exist/ });
  t.match(await run(runServer, '--ca', 'x'), { code: 2, err: /go together/ });
  t.match(await run(runServer, '--port', 'http'), { code: 2, err: /--port must be/ });
  t.match(await run(runServer, '--handshake-timeout', '0'), { code: 2, err: /--handshake-timeout must be an integer from 1 to 600/ });
  t.match(await run(runServer, '--max-handshakes-per-source', 'many'), { code: 2, err: /--max-handshakes-per-source must be/ });
  t.match(await run(runServer, '--help'), { code: 0, out: /--max-connections N .*default 100000/ });
  t.match(await run(runServer, '--store', 'redis'), { code: 2, err: /--store must be sqlite, postgres or rabbitmq/ });
  t.match(await run(runServer, '--sink'), { code: 2, err: /need --store rabbitmq/ });
  t.match(await run(runServer, '--store', 'rabbitmq', '--amqp-url', 'http://x'), { code: 2, err: /amqp:\/\/ or amqps:\/\// });
  t.match(await run(runServer, '--store', 'rabbitmq', '--order-queues', 'lazy'), { code: 2, err: /--order-queues must be/ });
  t.match(await run(runServer, '--store', 'postgres'), { code: 2, err: /--store postgres needs --pg-url/ });
  t.match(await run(runServer, '--pg-url', 'postgres://x/y'), { code: 2, err: /--pg-url needs --store postgres or --store rabbitmq/ });
  t.match(await run(runServer, '--store', 'postgres', '--pg-url', 'mysql://x/y'), { code: 2, err: /postgres:\/\/ or postgresql:\/\// });
  t.match(await run(runServer, '--store', 'postgres', '--pg-url', 'postgres://x/y', '--memory'), { code: 2, err: /exclude each other/ });
});

t.test('a missing pg (for --pg-url) is named with its install command', async (t) => {
  const { missingPeerError } = await import('../../src/cli/common.js');
  const thrown = Object.assign(new Error("Cannot find package 'pg' imported from /app/node_modules/ngtt/dist/src/server/postgres/store.js"), { code: 'ERR_MODULE_NOT_FOUND' });
  t.match(missingPeerError(thrown)?.message, /^needs pg, an optional peer dependency of ngtt that is not installed: npm install pg@8$/);
});
