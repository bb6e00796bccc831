/**
 * A server that answers every HTTPS call with garbage, 5xx or 4xx (real mutual TLS on
 * 127.0.0.1): the device stays up, retries what spec §9 says to retry with backoff, gives up
 * at once on a 4xx, bounds every wait, shows the trouble in status() and as 'fault' events —
 * and works normally once the server does.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type DeviceFault, NgttDevice } from '../../src/device/ngtt-device.js';
import { decode } from '../../src/minijson/index.js';
import { makePki } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-https-faults-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

type Mode = 'garbage' | '5xx' | '4xx' | 'ok';
let mode: Mode = 'garbage';
const stored: unknown[] = [];
const seen = new Map<string, number>();

function answer(req: IncomingMessage, res: ServerResponse, body: Buffer) {
  const what = `${req.method} ${req.url}`;
  seen.set(what, (seen.get(what) ?? 0) + 1);
  const json = (status: number, value: unknown) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(value));
  switch (mode) {
    case 'garbage':
      return res.writeHead(200, { 'Content-Type': 'application/minijson' }).end(Buffer.from([0x07, 0xff, 0x42]));
    case '5xx':
      return json(503, { status: 'down for maintenance' });
    case '4xx':
      return json(400, { status: 'your request is wrong' });
    case 'ok':
      if (what === 'GET /v1/device') return json(200, { device_id: 'dev-https-faults', verbose_name: 'x', facets: [], culture_context: {}, slave_devices: [] });
      if (what === 'POST /v1/device/orders') return json(200, []);
      if (what === 'POST /v1/device/pathpoints') stored.push(...(decode(body) as { values: [number, unknown][] }[]).flatMap((s) => s.values.map((v) => v[1])));
      return json(200, {});
  }
}

const server = https.createServer({ ...pki.server, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => answer(req, res, Buffer.concat(chunks)));
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});

const device = new NgttDevice({
  host: '127.0.0.1',
  httpsPort: (server.address() as AddressInfo).port,
  ca: pki.ca.cert,
  ...(await pki.device('dev-https-faults')),
  spoolPath: join(dir, 'spool.db'),
  handlers: { onRead: () => 1, onWrite: () => {} },
  pollIntervalMs: 50,
  retry: { baseMs: 20, maxMs: 100 },
  upload: { maxBatchAgeMs: 5 },
  logs: { maxBatchAgeMs: 5 },
});
const faults: DeviceFault[] = [];
device.on('fault', (f) => void faults.push(f));
device.start();
t.teardown(() => device.close({ timeoutMs: 500 }));
const errorOf = (call: Promise<unknown>) => call.then(() => undefined, (error: Error & { status?: number }) => error);

t.test('garbage answers: retried like a 5xx, waits are bounded, the trouble is visible', async (t) => {
  await device.push({ path: 'G', value: 1, timestamp: 1 });
  const error = await errorOf(device.getConfiguration({ timeoutMs: 300 }));
  t.match(error, { name: 'TimeoutError', message: /no answer for the device configuration within 300 ms \(GET \/v1\/device: undecodable answer/ });
  await until(() => (seen.get('POST /v1/device/pathpoints') ?? 0) >= 2, 'the batch posted again');
  t.equal(device.status().values.confirmed, 0);
  t.ok(device.status().faults.active.includes('https'), 'shown as still failing');
  t.ok(faults.some((f) => f.source === 'https'));
});

t.test('5xx: retried with backoff; a wait gives up on its signal or timeout, with the last error', async (t) => {
  mode = '5xx';
  const posts = seen.get('POST /v1/device/pathpoints') ?? 0;
  await until(() => (seen.get('POST /v1/device/pathpoints') ?? 0) >= posts + 2, 'the batch posted again');
  const error = await errorOf(device.getConfiguration({ timeoutMs: 300 }));
  t.match(error, { name: 'TimeoutError', message: /GET \/v1\/device: HTTP 503: down for maintenance/ });
  const controller = new AbortController();
  const declaring = errorOf(device.declarePathpoints([{ path: 'G', storage_level: 1 }], { signal: controller.signal }));
  await until(() => (seen.get('PUT /v1/device/pathpoints') ?? 0) >= 1, 'the declaration tried');
  controller.abort();
  t.match(await declaring, { name: 'AbortError' });
  t.equal(device.status().values.pending, 1, 'the value waits in the spool');
});

t.test('4xx: rejected at once with the status, never retried; a refused batch is set aside, not lost silently', async (t) => {
  mode = '4xx';
  const error = await errorOf(device.getConfiguration());
  t.match(error, { name: 'HttpError', status: 400 });
  await until(() => device.status().values.rejected === 1, 'the refused batch set aside');
  t.equal(device.status().values.pending, 0);
  t.ok(faults.some((f) => f.source === 'upload' && /refused by the server: HTTP 400; kept aside/.test(f.message)));
  const declared = await errorOf(device.declarePathpoints([{ path: 'G', storage_level: 1 }]));
  t.match(declared, { name: 'HttpError', status: 400 });
  const puts = seen.get('PUT /v1/device/pathpoints');
  const polls = seen.get('POST /v1/device/orders') ?? 0;
  await until(() => (seen.get('POST /v1/device/orders') ?? 0) >= polls + 5, 'five more polls (retries would have come by now)');
  t.equal(seen.get('PUT /v1/device/pathpoints'), puts, 'not retried');
});

t.test('the server works again: so does the device', async (t) => {
  mode = 'ok';
  t.match(await device.getConfiguration({ timeoutMs: 5000 }), { device_id: 'dev-https-faults' });
  await device.declarePathpoints([{ path: 'G', storage_level: 1 }], { timeoutMs: 5000 });
  await device.push({ path: 'G', value: 2, timestamp: 2 });
  await until(() => device.status().values.confirmed === 1, 'the new value confirmed');
  t.same(stored, [2], 'stored once');
  await until(() => !device.status().faults.active.includes('https'), 'no longer shown as failing');
  t.equal(device.status().transport, 'https');
});
