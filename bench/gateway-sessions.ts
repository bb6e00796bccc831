/**
 * What one connected device costs a RabbitMQ gateway: starts `ngtt server --store rabbitmq` in a
 * child process, connects BENCH_DEVICES devices (TLS, FETCH_ORDERS, so each has an order source:
 * an AMQP channel and a consumer on its queue) and reads the gateway's RSS before and after.
 * `npx tsx bench/gateway-sessions.ts`; needs RabbitMQ (NGTT_TEST_AMQP_URL). Deletes what it
 * created on the broker. Keep BENCH_DEVICES well below the broker's file-descriptor budget.
 * Not a test: it asserts nothing, it measures.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import amqp from 'amqplib';
import { createCA, createDeviceCertificate, createServerCertificate } from '../src/pki/index.js';
import { encodeFrame, FrameType } from '../src/protocol/index.js';
import { deleteSharedTopology, topology } from '../src/server/rabbitmq/index.js';

const URL_ = process.env.NGTT_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const N = Number(process.env.BENCH_DEVICES ?? 300);
const prefix = `ngtt-bench-${randomBytes(4).toString('hex')}`;
const dir = await mkdtemp(join(tmpdir(), 'ngtt-bench-'));
const ca = await createCA({ commonName: 'bench CA' });
const server = await createServerCertificate(ca, { hosts: ['localhost', '127.0.0.1'] });
await writeFile(join(dir, 'ca.pem'), ca.cert);
await writeFile(join(dir, 's.crt'), server.cert);
await writeFile(join(dir, 's.key'), server.key);

const child = spawn(
  process.execPath,
  ['bin/ngtt.js', 'server', '--store', 'rabbitmq', '--amqp-url', URL_, '--amqp-prefix', prefix, '--memory', '--ca', join(dir, 'ca.pem'), '--cert', join(dir, 's.crt'), '--key', join(dir, 's.key'), '--port', '0', '--https-port', '0', '--admin-port', '0'],
  { cwd: join(import.meta.dirname, '..'), env: { ...process.env, NGTT_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'inherit', 'pipe'] },
);
const port = await new Promise<number>((resolve, reject) => {
  let err = '';
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
    const m = /NGTT on [^:]+:(\d+)/.exec(err);
    if (m) resolve(Number(m[1]));
  });
  child.once('exit', () => reject(new Error(err)));
});
const rss = async () => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024;
await new Promise((r) => setTimeout(r, 1000));
const before = await rss();

const ids = Array.from({ length: N }, (_, i) => `bench-${i}`);
const certs = await Promise.all(ids.map((deviceId) => createDeviceCertificate(ca, { deviceId, environment: 2 })));
const t0 = Date.now();
const sockets: tls.TLSSocket[] = [];
for (let i = 0; i < N; i += 50) {
  sockets.push(
    ...(await Promise.all(
      certs.slice(i, i + 50).map(
        (c) =>
          new Promise<tls.TLSSocket>((resolve, reject) => {
            const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.cert, cert: c.cert, key: c.key }, () => {
              s.write(encodeFrame(0, FrameType.FETCH_ORDERS));
              s.write(encodeFrame(1, FrameType.PING));
              s.once('data', () => resolve(s));
            });
            s.once('error', reject);
          }),
      ),
    )),
  );
}
const connectMs = Date.now() - t0;
await new Promise((r) => setTimeout(r, 2000));
const after = await rss();
const result = { devices: N, connectMs, rssBeforeMB: +(before / 2 ** 20).toFixed(1), rssAfterMB: +(after / 2 ** 20).toFixed(1), perDeviceKB: +((after - before) / N / 1024).toFixed(1) };
console.log(JSON.stringify(result));

for (const s of sockets) s.destroy();
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));
const conn = await amqp.connect(URL_);
const topo = topology({ prefix });
for (const id of ids) {
  const ch = await conn.createChannel();
  await ch.deleteQueue(topo.ordersQueue(id)).catch(() => {});
  await ch.close().catch(() => {});
}
const ch = await conn.createChannel();
await deleteSharedTopology(ch, topo).catch(() => {});
await ch.deleteExchange(`${prefix}.control`).catch(() => {});
await conn.close();
await rm(dir, { recursive: true, force: true });
