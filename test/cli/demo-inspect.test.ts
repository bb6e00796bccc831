/** `ngtt demo --inspect`: every machine's events reach the XState inspector bridge. */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { NGTT } from '../helpers/cli.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

t.test('inspection events of the supervisor and its children are streamed', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'ngtt-inspect-'));
  t.teardown(() => rm(data, { recursive: true, force: true }));
  const port = await freePort();
  const child = spawn(process.execPath, [...NGTT, 'demo', '--data', data, '--devices', '2', '--port', '0', '--https-port', '0', '--admin-port', '0', '--inspect', '--inspect-port', String(port), '--duration', '30'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  const deadline = Date.now() + 30_000;
  while (!out.includes(`http://localhost:${port}`)) {
    if (Date.now() > deadline) throw new Error(`no inspector line in: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const actors = new Set<string>();
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  ws.on('message', (m) => {
    // Each actor announces itself once with its machine definition (as JSON).
    const e = JSON.parse(String(m)) as { type: string; definition?: string };
    if (e.type === '@xstate.actor' && e.definition) actors.add((JSON.parse(e.definition) as { id: string }).id);
  });
  while (!(actors.has('supervisor') && actors.has('connection') && actors.has('upload'))) {
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  ws.close();
  t.ok(actors.has('supervisor'), `supervisor seen (saw ${[...actors].join(', ')})`);
  t.ok(actors.has('connection'), 'connection machine seen');
  t.ok(actors.has('upload'), 'upload machine seen');
  child.kill('SIGINT');
  t.equal(await new Promise((r) => child.on('exit', r)), 0);
});
