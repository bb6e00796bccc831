import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { FrameType } from '../../src/protocol/index.js';
import { RawDevice } from '../helpers/raw-device.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

const pki = await makePki();
const dataDir = await mkdtemp(join(tmpdir(), 'ngtt-restart-'));
t.teardown(() => rm(dataDir, { recursive: true, force: true }));

t.test('SIGKILLed server: queued and in-flight orders and every confirmed datum survive', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'helpers', 'server-process.ts')], {
    env: { ...process.env, NGTT_TEST_CONFIG: JSON.stringify({ dataDir, ca: pki.ca.cert, ...pki.server }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(() => {
    child.kill('SIGKILL');
    return exited;
  });
  const [line] = await within(createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string]), 'the child server to start', 20_000);
  const ports = JSON.parse(line) as { ngttPort: number; adminPort: number };

  const admin = `http://127.0.0.1:${ports.adminPort}/v1/admin/devices/dev-k/orders`;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await fetch(admin, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(readSection(`K${i}`)) });
    ids.push(((await r.json()) as { id: string }).id);
  }
  const device = await RawDevice.connect(ports.ngttPort, { ca: pki.ca.cert, ...(await pki.device('dev-k')) });
  device.send(0, FrameType.FETCH_ORDERS);
  const orders = await device.takeOrders(3);
  device.send(orders[0].tid, FrameType.ORDER_CONFIRM);
  const confirmed = [];
  for (let tid = 1; tid <= 20; tid++) {
    device.send(tid, FrameType.DATA_STREAM, [{ path: 'W1', values: [[tid, tid * 10]] }]);
    confirmed.push(tid);
  }
  for (const tid of confirmed) await device.takeType(FrameType.DATA_STREAM_CONFIRM, tid);
  // The ORDER_CONFIRM has no reply; wait until the admin API shows it settled.
  await until(async () => ((await (await fetch(`${admin}?state=confirmed`)).json()) as { orders: unknown[] }).orders.length === 1, 'the confirmation to be stored');

  child.kill('SIGKILL');
  await exited;
  await device.closed;

  const server = await startTestServer(pki, { dataDir });
  t.teardown(() => server.close());
  t.same((await server.store.readData('dev-k', { limit: 100 })).map((s) => s.values[0][0]), confirmed, 'every confirmed batch is there');
  t.equal((await server.store.getOrder(ids[0]))?.state, 'confirmed');
  const again = await server.connect('dev-k');
  t.teardown(() => again.destroy());
  again.send(0, FrameType.FETCH_ORDERS);
  const redelivered = await again.takeOrders(2);
  t.same(redelivered.map((o) => o.id), ids.slice(1), 'the in-flight orders are delivered again');
});

t.test('orderly restart keeps the queue', async (t) => {
  const dir = join(dataDir, 'orderly');
  const first = await startTestServer(pki, { dataDir: dir });
  const id = await first.enqueueOrder('dev-o', readSection('O'));
  await first.close();
  const second = await startTestServer(pki, { dataDir: dir });
  t.teardown(() => second.close());
  const device = await second.connect('dev-o');
  t.teardown(() => device.destroy());
  device.send(0, FrameType.FETCH_ORDERS);
  t.equal((await device.takeOrder()).id, id);
});
