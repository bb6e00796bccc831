/**
 * `ngtt demo --inspect`: every machine's events reach the Stately inspector bridge, a client
 * that connects late still gets every live actor first, the bridge listens on 127.0.0.1 only,
 * and a busy port (of the bridge or of the live view) is one clear line, not a stack trace.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { startNgtt } from '../helpers/cli.js';

async function listening(): Promise<Server> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return s;
}

async function freePort(): Promise<number> {
  const s = await listening();
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function until(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A WebSocket client of the bridge: every message it got, in order. */
function client(port: number) {
  const messages: { type: string; sessionId?: string; name?: string; definition?: string }[] = [];
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  ws.on('message', (m) => messages.push(JSON.parse(String(m))));
  return { ws, messages };
}

/** The machine ids of the actors announced in `messages`, as `id` → count. */
function announced(messages: ReturnType<typeof client>['messages']): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of messages) {
    if (m.type !== '@xstate.actor' || !m.definition) continue;
    const id = (JSON.parse(m.definition) as { id: string }).id;
    counts[id] = (counts[id] ?? 0) + 1;
  }
  return counts;
}

t.test('inspection events stream to the bridge, and a late client first gets every live actor', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'ngtt-inspect-'));
  t.teardown(() => rm(data, { recursive: true, force: true }));
  const port = await freePort();
  const demo = startNgtt(t, ['demo', '--data', data, '--devices', '2', '--port', '0', '--https-port', '0', '--admin-port', '0', '--inspect', '--inspect-port', String(port), '--duration', '60']);
  await until('the inspector line', () => demo.out.includes(`open http://127.0.0.1:${port}`));

  const early = client(port);
  t.teardown(() => early.ws.close());
  await until('supervisor, connection and upload machines', () => ['supervisor', 'connection', 'upload'].every((id) => announced(early.messages)[id]));
  // Past the 200 messages the package's own bridge would replay: announcements are long gone from any tail.
  await until('500 messages', () => early.messages.length > 500);

  const late = client(port);
  t.teardown(() => late.ws.close());
  // dev-1 on NGTT has all four; dev-2 (HTTPS, the last device) has no connection machine.
  const expected: Record<string, number> = { supervisor: 2, connection: 1, upload: 2, logs: 2 };
  await until("the late client to hear of both devices' machines", () => Object.entries(expected).every(([id, n]) => announced(late.messages)[id] === n)).catch(() => {});
  const counts = announced(late.messages);
  for (const [id, n] of Object.entries(expected)) t.equal(counts[id], n, `the late client knows the live ${id} machines`);
  const firstOther = late.messages.findIndex((m) => m.type !== '@xstate.actor' && m.type !== '@xstate.snapshot');
  const snapshotsFirst = late.messages.slice(0, firstOther === -1 ? undefined : firstOther);
  t.ok(snapshotsFirst.filter((m) => m.type === '@xstate.actor').length >= 7, 'actors are announced before any event');
  t.ok(snapshotsFirst.some((m) => m.type === '@xstate.snapshot'), 'with their current snapshots');

  const page = await (await fetch(`http://127.0.0.1:${port}/`)).text();
  t.match(page, `ws://127.0.0.1:${port}`, 'the bridge page connects to the loopback address');
  // Only on loopback: another address of this machine refuses.
  const other = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  if (other) await t.rejects(fetch(`http://${other}:${port}/`), `not listening on ${other}`);

  demo.child.kill('SIGINT');
  t.equal(await demo.exited, 0);
});

for (const option of ['--inspect-port', '--live-port']) {
  t.test(`a busy ${option} is one clear line`, async (t) => {
    const data = await mkdtemp(join(tmpdir(), 'ngtt-busy-'));
    t.teardown(() => rm(data, { recursive: true, force: true }));
    const taken = await listening();
    t.teardown(() => taken.close());
    const port = (taken.address() as { port: number }).port;
    const args = ['demo', '--data', data, '--devices', '1', '--port', '0', '--https-port', '0', '--admin-port', '0', '--duration', '20', option, String(port)];
    const demo = startNgtt(t, option === '--inspect-port' ? [...args, '--inspect'] : args);
    t.not(await demo.exited, 0, 'the demo stops');
    const lines = demo.err.trim().split('\n');
    t.equal(lines.length, 1, `one line: ${demo.err}`);
    t.match(lines[0], new RegExp(`^ngtt demo: the (inspector bridge|live view) cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
    t.notMatch(demo.err, /\n\s+at /, 'no stack trace');
  });
}
