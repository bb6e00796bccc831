/**
 * End to end, as a newcomer meets it: `ngtt demo` in a non-TTY for a few seconds. Checked from
 * its output and from the admin API while it runs: orders were acknowledged and values
 * confirmed, the HTTPS device works too, and Ctrl-C (SIGINT) shuts everything down cleanly.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { NGTT, startNgtt } from '../helpers/cli.js';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

t.test('ngtt demo runs a fleet, acks orders, confirms values and stops cleanly', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'ngtt-demo-'));
  t.teardown(() => rm(data, { recursive: true, force: true }));
  const demo = startNgtt(t, ['demo', '--data', data, '--port', '0', '--https-port', '0', '--admin-port', '0', '--order-every', '200']);

  const adminUrl = await waitFor('the admin URL', async () => demo.out.match(/admin (http:\/\/127\.0\.0\.1:\d+)/)?.[1]);
  type Dev = { deviceId: string; connected: boolean; counters: { ordersConfirmed: number; dataBatchesConfirmed: number; httpRequests: number } };
  const devices = async () => ((await (await fetch(`${adminUrl}/v1/admin/devices`)).json()) as { devices: Dev[] }).devices;

  // Every device gets orders done and data stored, whatever its transport.
  const settled = await waitFor('orders and data on all three devices', async () => {
    const ds = await devices();
    const ready = ds.length === 3 && ds.every((d) => d.counters.dataBatchesConfirmed > 0);
    const ngttAcked = ds.filter((d) => d.counters.ordersConfirmed > 0).length >= 2;
    return ready && ngttAcked ? ds : undefined;
  }, 60_000);
  t.ok(settled.find((d) => d.deviceId === 'dev-3')!.counters.httpRequests > 0, 'the NGTT-off device talks HTTPS');
  const delivered = async () => {
    const list = (await (await fetch(`${adminUrl}/v1/admin/devices/dev-3/orders`)).json()) as { orders: { state: string }[] };
    return list.orders.some((o) => o.state === 'delivered') ? true : undefined;
  };
  t.ok(await waitFor('an order polled over HTTPS', delivered), 'dev-3 polled its orders');

  // The devices' own pino logs arrive as LOGS records (the sysctl handler logs at info).
  const logs = async () => {
    const body = (await (await fetch(`${adminUrl}/v1/admin/devices/dev-1/logs`)).json()) as { logs: { service: string; message: unknown }[] };
    return body.logs.some((l) => JSON.stringify(l.message).includes('sysctl')) ? body.logs : undefined;
  };
  t.ok((await waitFor('shipped logs', logs)).length > 0, 'log shipping');

  // Plain periodic lines in a non-TTY, with the machine's state names.
  await waitFor('a status line', async () => (/dev-1 ngtt=on transport=ngtt connection=authenticated/.test(demo.out) ? true : undefined));
  t.match(demo.out, /dev-3 ngtt=off transport=https/);
  t.notMatch(demo.out, /\x1b\[/, 'no terminal escapes in a pipe');

  demo.child.kill('SIGINT');
  const code = await demo.exited;
  t.equal(code, 0, `clean exit (stderr: ${demo.err.slice(0, 500)})`);
  t.match(demo.out, /stopping: .*\(Ctrl-C again to force\)/, 'after a Ctrl-C, a second one forces');
  t.match(demo.out, /^live view: open http:\/\/127\.0\.0\.1:\d+\/ /m, 'the live view URL is printed');
  t.match(demo.out, /order dev-1 +\S.* NGTT +confirmed +delivered \+\d+ ms, executed \+\d+ ms, confirmed \+\d+ ms/, 'settled orders with what they were and their latency');
  t.match(demo.out, /demo finished after .* orders issued; devices acked [1-9]\d*/);
  t.match(demo.out, /confirmed [1-9]\d*/);
  // Every order the demo sends is executable: a rejection would mean an order lost (e.g. one
  // cut short by the shutdown and refused instead of left for redelivery).
  t.match(demo.out, /devices acked \d+, rejected 0;/);
});

t.test('without --data the demo keeps its data in ./data/demo of the current directory', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'ngtt-demo-cwd-'));
  t.teardown(() => rm(cwd, { recursive: true, force: true }));
  const child = spawn(process.execPath, [...NGTT, 'demo', '--devices', '1', '--duration', '2', '--port', '0', '--https-port', '0', '--admin-port', '0'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  t.teardown(() => child.kill('SIGKILL'));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  t.equal(code, 0, out.slice(-500));
  t.notMatch(out, /Ctrl-C again/, 'a --duration ending offers no forcing');
  t.match(out, `data in ${join(cwd, 'data', 'demo')} `);
  for (const file of ['pki/ca.key', 'pki/devices/dev-1.crt', 'server/ngtt.db', 'server.log']) t.ok(existsSync(join(cwd, 'data', 'demo', file)), file);
});
