/** The live view's HTTP side: loopback only, its own pages only, clear errors. */
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { InspectionEvent } from 'xstate';
import { NgttDevice } from '../../src/device/index.js';
import { ListenError, startLiveView } from '../../src/live/index.js';
import { createDevDevice, createDevPki } from '../../src/pki/index.js';

function call(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        // An event stream never ends: its first event is enough.
        if (res.headers['content-type'] === 'text/event-stream' && text.includes('\n\n')) res.destroy();
      });
      res.on('close', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), text }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

t.test('serves its page and a snapshot first; refuses other hosts, other origins and bad orders', async (t) => {
  const live = await startLiveView();
  t.teardown(() => live.close());
  t.match(live.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await call(live.port, '/');
  t.equal(page.status, 200);
  t.match(page.text, '<script src="/live.js">');
  const events = await call(live.port, '/events');
  t.match(events.text, /^event: snapshot\ndata: \{/, 'a new page gets the whole picture first');
  t.equal((await call(live.port, '/', { headers: { host: `attacker.example:${live.port}` } })).status, 421, 'a rebound DNS name is refused');
  const json = JSON.stringify({ deviceId: 'dev-1', sections: [] });
  const cross = await call(live.port, '/orders', { method: 'POST', headers: { origin: 'http://attacker.example', 'content-type': 'application/json' }, body: json });
  t.equal(cross.status, 403, 'another site cannot send orders');
  const unknown = await call(live.port, '/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: json });
  t.equal(unknown.status, 400);
  t.match(JSON.parse(unknown.text).error, /deviceId must be one of/);
  const garbage = await call(live.port, '/orders', { method: 'POST', body: '{' });
  t.equal(garbage.status, 400);
  t.match(JSON.parse(garbage.text).error, /^not JSON/);
});

t.test('a busy port is a one-line error', async (t) => {
  const first = await startLiveView();
  t.teardown(() => first.close());
  const error = await startLiveView({ port: first.port }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(error, ListenError);
  t.equal((error as ListenError).code, 'EADDRINUSE');
  t.equal((error as Error).message, `the live view cannot listen on 127.0.0.1:${first.port}: the port is in use (choose another port, or 0 for a free one)`);
});

t.test("NgttDevice's live option shows the device and its machines, next to its own inspect", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ngtt-live-device-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await createDevPki(dir);
  const material = await createDevDevice(dir, 'bench-1');
  const live = await startLiveView();
  t.teardown(() => live.close());
  const seen: string[] = [];
  // No server: NGTT off and HTTPS to a closed port; the machines run (and retry) all the same.
  const device = new NgttDevice({
    ca: pki.ca.cert,
    ...material,
    host: '127.0.0.1',
    httpsPort: 9,
    spoolPath: ':memory:',
    handlers: { onRead: () => 0, onWrite: () => {} },
    inspect: (e: InspectionEvent) => seen.push(e.type),
    live,
  });
  t.teardown(() => device.close({ timeoutMs: 1000 }));
  device.start();
  const names = live.actors.list().filter((a) => a.deviceId === 'bench-1').map((a) => a.name);
  t.ok(names.includes('supervisor') && names.includes('upload') && names.includes('logs'), `the device's machines are on the board (${names.join(', ')})`);
  t.ok(seen.includes('@xstate.actor'), 'its own inspector gets the events too');
  const state = JSON.parse((await call(live.port, '/state')).text) as { fleet: { deviceId: string; connection: string }[] };
  t.same(state.fleet.map((d) => [d.deviceId, d.connection]), [['bench-1', 'disabled']]);
});
