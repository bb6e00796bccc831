/**
 * Random cuts between a real NgttDevice and the reference server, through the fault proxy
 * (TLS end to end, verification on). Orders are enqueued and values pushed continuously while
 * every connection is cut after a random number of bytes: during order delivery, during the
 * acknowledgement, during data upload, inside frames and inside the TLS handshake. Then the
 * link heals and the invariant of test/helpers/reliability.ts is checked.
 *
 * SOAK_CUTS=2000 (npm run soak) runs more cuts. RELIABILITY_SEED replays a run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { check, orderSections, summary } from '../helpers/reliability.js';
import { startRig } from '../helpers/rig.js';
import { makePki } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

const CUTS = Number(process.env.SOAK_CUTS ?? 200);
const SEED = Number(process.env.RELIABILITY_SEED ?? Date.now() % 1_000_000);

/** mulberry32: a seeded random source, so a failing run can be replayed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const pki = await makePki();
const dir = await mkdtemp(join(tmpdir(), 'ngtt-cuts-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test(`${CUTS} random cuts during order delivery, acknowledgement and upload: nothing lost, nothing doubled`, async (t) => {
  const random = seeded(SEED);
  t.comment(`seed ${SEED} (RELIABILITY_SEED=${SEED} replays the cut points)`);
  const deviceId = 'dev-cuts';
  const { server, proxy, device, executions } = await startRig(t, pki, {
    deviceId,
    dir,
    // Budgets from inside the TLS handshake (~2.5 kB) to a few dozen frames after it.
    policy: { cutAfterBytes: () => 1500 + Math.floor(random() * 6000) },
    timings: { connectTimeoutMs: 2000 },
    random,
  });
  // What each cut interrupted: orders sent but not yet settled on the server (delivery,
  // execution or acknowledgement under way; the memory store reads synchronously, so this is
  // the state at the cut), values in the device's spool not yet confirmed.
  const during = { orders: 0, upload: 0 };
  proxy.policy.onCut = () => {
    if (device.status().connection !== 'authenticated') return;
    void server.store.listOrders(deviceId, { state: 'in-flight' }).then((l) => l.length > 0 && during.orders++);
    if (device.status().values.pending > 0) during.upload++;
  };

  const orders = new Map<number, string>();
  const accepted: string[] = [];
  let authenticated = 0;
  device.on('state', (s) => s === 'authenticated' && authenticated++);
  let n = 0;
  let v = 0;
  const started = Date.now();
  while (proxy.stats.cuts < CUTS) {
    // A little of everything each turn: one order and a handful of values.
    orders.set(n, await server.enqueueOrder(deviceId, orderSections(n)));
    n++;
    const pushes = [];
    for (let i = 0; i < 5; i++, v++) {
      const value = v;
      pushes.push(device.push({ path: 'V', value, timestamp: 1_700_000_000_000 + value }).then(() => accepted.push(`V=${value}`)));
    }
    await Promise.all(pushes);
    await new Promise((r) => setTimeout(r, 5 + random() * 10));
    if (Date.now() - started > 120_000) t.fail(`only ${proxy.stats.cuts} cuts in 120 s`);
  }
  proxy.policy.cutAfterBytes = undefined; // the link heals
  const cuts = proxy.stats.cuts;

  await until(
    async () => (await server.store.listOrders(deviceId, { state: 'confirmed', limit: 100_000 })).length === orders.size && device.status().values.pending === 0,
    'every order confirmed and the spool empty',
    30_000,
  );
  const outcome = await check({ store: server.store, deviceId, orders, executions, accepted, spoolPending: device.status().values.pending });
  t.comment(summary('random cuts', outcome, { cuts, 'connections established': authenticated, 'cut with orders open': during.orders, 'cut with values unconfirmed': during.upload }));
  t.ok(cuts >= CUTS, `${cuts} cuts`);
  t.ok(authenticated > CUTS / 4, `${authenticated} connections got past the handshake, so cuts hit the protocol`);
  t.ok(during.orders > 0 && during.upload > 0, 'cuts hit order delivery/acknowledgement and uploads');
  t.same(outcome.lost, [], 'nothing lost');
  t.same(outcome.duplicated, [], 'nothing executed or stored twice');
  t.same(outcome.limbo, [], 'nothing in limbo');
  t.equal(server.counters(deviceId).protocolErrors, 0, 'no protocol errors (no double acknowledgement)');
});
