import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { openPostgresStore } from '../../src/server/postgres/index.js';
import { createMemoryStore, openSqliteStore, type LocalStore, type Store } from '../../src/server/store/index.js';
import { PG_SKIP_REASON, postgresReachable, testDatabase } from '../helpers/postgres.js';

const section = (path: string) => [{ orders: [{ type: 'read' as const, path }], disposition: 0 as const }];

const tmp = await mkdtemp(join(tmpdir(), 'ngtt-store-'));
t.teardown(() => rm(tmp, { recursive: true, force: true }));
let n = 0;
/** What these tests use: the Store, plus the history merge of the stores that back a fleet. */
type TestStore = Store & Pick<LocalStore, 'recordOrder'>;
const kinds: [string, () => Promise<TestStore>][] = [
  ['memory', async () => createMemoryStore()],
  ['sqlite', async () => openSqliteStore(join(tmp, `s${++n}.db`))],
];
// The same behaviour from PostgreSQL (a fresh database per test), when one can be reached.
if (await postgresReachable()) kinds.push(['postgres', async () => openPostgresStore({ url: await testDatabase(t), ownsOrderQueue: true })]);
else t.test('postgres: the Store tests', { skip: PG_SKIP_REASON }, () => {});

/** A LOGS batch (spec §7) of records with these messages. */
const logBatch = (...messages: string[]) => messages.map((message, i) => ({ service: 's', when: 1_700_000_000_000 + i, message, level: 20 }));
const logMessages = async (store: Store, deviceId = 'dev') => (await store.readLogs(deviceId, { limit: 1000 })).map((r) => r.message);

for (const [kind, make] of kinds) {
  t.test(`${kind}: order source life cycle`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    const ids = [];
    for (const p of ['A', 'B', 'C', 'D']) ids.push(await store.enqueueOrder('dev', section(p)));
    await store.enqueueOrder('other', section('X'));

    let notified = 0;
    const source = await store.openOrderSource('dev', { prefetch: 4 });
    source.onAvailable(() => notified++);
    const a = await source.next();
    const b = await source.next();
    const c = await source.next();
    t.same([a?.id, b?.id, c?.id], ids.slice(0, 3));
    t.equal(a?.state, 'in-flight');
    t.same(a?.sections, section('A'));
    t.equal(await source.settle(a!.id, 'confirmed'), true);
    t.equal(await source.settle(a!.id, 'confirmed'), false, 'settled only once');
    t.equal(await source.settle(b!.id, 'rejected', 'no such pathpoint'), true);
    t.equal(await source.settle(ids[3], 'confirmed'), false, 'not handed out by this source');

    const e = await store.enqueueOrder('dev', section('E'));
    t.equal(notified, 1, 'told about the new order');
    await source.close();
    t.equal(await source.next(), null, 'a closed source hands out nothing');

    // C went back to the front: C, D, E.
    const again = await store.openOrderSource('dev', { prefetch: 4 });
    const redelivered = await again.next();
    t.equal(redelivered?.id, c!.id);
    t.equal(redelivered?.deliveries, 2);
    t.equal((await again.next())?.id, ids[3]);
    t.equal((await again.next())?.id, e);
    t.equal(await again.next(), null);

    const byState = Object.fromEntries((await store.listOrders('dev')).map((o) => [o.id, o.state]));
    t.same(byState, { [ids[0]]: 'confirmed', [ids[1]]: 'rejected', [ids[2]]: 'in-flight', [ids[3]]: 'in-flight', [e]: 'in-flight' });
    t.equal((await store.getOrder(ids[1]))?.reason, 'no such pathpoint');
    t.equal((await store.listOrders('dev', { state: 'confirmed' })).length, 1);
    t.equal((await store.listOrders('dev', { limit: 2 })).map((o) => o.id).join(), [ids[3], e].join(), 'limit keeps the newest');

    // Opening a new source closes the old one (its orders requeued), so none is held twice.
    const third = await store.openOrderSource('dev', { prefetch: 4 });
    t.equal((await again.next()), null);
    t.equal((await third.next())?.id, c!.id);
    await third.close();
  });

  t.test(`${kind}: recordOrder merges history from elsewhere (broker-backed stores)`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    const base = { deviceId: 'dev', sections: section('R'), settledAt: null, reason: null, deliveries: 0 };
    await store.recordOrder({ ...base, id: 'o1', state: 'confirmed', enqueuedAt: 200, settledAt: 300, deliveries: 1 });
    await store.recordOrder({ ...base, id: 'o1', state: 'queued', enqueuedAt: 100 });
    t.match(await store.getOrder('o1'), { state: 'confirmed', enqueuedAt: 100, settledAt: 300, deliveries: 1 }, 'a late "queued" does not undo the settle');
    await store.recordOrder({ ...base, id: 'o2', state: 'queued', enqueuedAt: 100 });
    await store.recordOrder({ ...base, id: 'o2', state: 'rejected', enqueuedAt: 150, settledAt: 160, reason: 'no', deliveries: 2 });
    t.match(await store.getOrder('o2'), { state: 'rejected', enqueuedAt: 100, reason: 'no', deliveries: 2 });
    t.same((await store.listOrders('dev')).map((o) => o.id), ['o1', 'o2']);
    const source = await store.openOrderSource('dev', { prefetch: 4 });
    t.equal(await source.next(), null, 'settled history is not handed out');
    await source.close();
  });

  t.test(`${kind}: HTTP poll takes queued orders as delivered`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    const first = await store.enqueueOrder('dev', section('A'));
    const second = await store.enqueueOrder('dev', section('B'));
    const source = await store.openOrderSource('dev', { prefetch: 4 });
    t.equal((await source.next())?.id, first);
    const taken = await store.takeQueuedOrders('dev');
    t.same(taken.map((o) => [o.id, o.state]), [[second, 'delivered']]);
    t.same(await store.takeQueuedOrders('dev'), []);
    await source.close();
    t.same((await store.takeQueuedOrders('dev')).map((o) => o.id), [first], 'the requeued one is polled next');
  });

  t.test(`${kind}: uploads, config, declarations`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    await store.ingest('dev', {
      data: [{ series: [{ path: 'W1', values: [[1, 5], [2, 2n ** 70n]] }] }, { series: [{ path: 'W2', values: [[false, 3, 'timeout']] }] }],
      logs: [[{ service: 's', when: 10, message: 'hello', level: 20 }]],
    });
    await store.ingest('dev', { data: [{ series: [{ path: 'W1', values: [[4, 'x']] }] }] });
    const all = await store.readData('dev');
    t.same(all.map(({ receivedAt, ...s }) => s), [
      { path: 'W1', values: [[1, 5], [2, 2n ** 70n]] },
      { path: 'W2', values: [[false, 3, 'timeout']] },
      { path: 'W1', values: [[4, 'x']] },
    ]);
    t.equal(typeof all[0].receivedAt, 'number');
    t.same((await store.readData('dev', { path: 'W1', limit: 1 })).map((s) => s.values), [[[4, 'x']]]);
    t.same(await store.readData('other'), []);
    t.same((await store.readLogs('dev')).map((r) => r.message), ['hello']);

    const config = await store.getDeviceConfig('dev');
    t.same(config, { device_id: 'dev', verbose_name: 'dev', facets: [], culture_context: { language: 'en', timezone: 'UTC', units: 'metric' }, slave_devices: [] });
    const updated = await store.updateDeviceConfig('dev', { verbose_name: 'Boiler', culture_context: { language: 'pl' } });
    t.equal(updated.culture_context.language, 'pl');
    t.equal(updated.culture_context.timezone, 'UTC');
    t.same(await store.getDeviceConfig('dev'), updated);
    await store.declarePathpoints('dev', [{ path: 'W1', storage_level: 1 }]);
    t.same(await store.readPathpointDeclarations('dev'), [{ path: 'W1', storage_level: 1 }]);
    t.same(await store.getDeviceConfig('dev'), updated, 'declarations leave the config alone');
  });

  t.test(`${kind}: declarations merge; the server's storage level stands unless the operator sets it`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    t.same(await store.declarePathpoints('dev', [{ path: 'W1', storage_level: 1 }, { path: 'W2', storage_level: 1 }]), [
      { path: 'W1', storage_level: 1 },
      { path: 'W2', storage_level: 1 },
    ]);
    t.same(await store.declarePathpoints('dev', [{ path: 'W2', storage_level: 2 }, { path: 'W3', storage_level: 1 }], { authoritative: true }), [
      { path: 'W1', storage_level: 1 },
      { path: 'W2', storage_level: 2 },
      { path: 'W3', storage_level: 1 },
    ], 'the operator sets levels and names pathpoints the device did not declare');
    t.same(await store.declarePathpoints('dev', [{ path: 'W2', storage_level: 1 }, { path: 'W4', storage_level: 1 }]), [
      { path: 'W1', storage_level: 1 },
      { path: 'W2', storage_level: 2 },
      { path: 'W3', storage_level: 1 },
      { path: 'W4', storage_level: 1 },
    ], "a device's declaration adds W4 but does not undo the operator's level for W2");
  });

  t.test(`${kind}: a log batch sent again (unacknowledged, resent after a reconnect) is stored once, per device`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    await store.ingest('dev', { logs: [logBatch('a', 'b'), logBatch('a', 'b')] }); // twice in one call
    await store.ingest('dev', { logs: [logBatch('a', 'b')] }); // again in a separate call
    t.same(await logMessages(store), ['a', 'b'], 'stored once');
    await store.ingest('dev', { logs: [logBatch('b', 'a'), logBatch('c')] });
    t.same(await logMessages(store), ['a', 'b', 'b', 'a', 'c'], 'the same records in another order are another batch');
    await store.ingest('other', { logs: [logBatch('a', 'b')] });
    t.same(await logMessages(store, 'other'), ['a', 'b'], "another device's identical batch is its own");
    await store.ingest('dev', { data: [{ series: [{ path: 'W1', values: [[1, 1]] }] }], logs: [logBatch('c')] });
    t.same(await logMessages(store), ['a', 'b', 'b', 'a', 'c'], 'a repeat next to new data is still skipped');
    t.equal((await store.readData('dev')).length, 1, 'and the data beside it stored');
  });

  t.test(`${kind}: message receipts show on the orders that carry the message`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    const message = (uuid: string) => ({ orders: [{ type: 'message' as const, uuid }], disposition: 0 as const });
    const id = await store.enqueueOrder('dev', [message('m-1'), { orders: [{ type: 'read' as const, path: 'W1' }, { type: 'message' as const, uuid: 'm-2' }], disposition: 1 as const }]);
    const plain = await store.enqueueOrder('dev', section('A'));
    t.same((await store.getOrder(id))?.messages, [{ uuid: 'm-1', receivedAt: null }, { uuid: 'm-2', receivedAt: null }]);
    const at = await store.recordMessageReceipt('dev', 'm-2');
    t.equal(await store.recordMessageReceipt('dev', 'm-2'), at, 'a repeat keeps the first receipt');
    await store.recordMessageReceipt('other', 'm-1'); // another device's receipt says nothing about dev's message
    const listed = await store.listOrders('dev');
    t.same(listed.find((o) => o.id === id)?.messages, [{ uuid: 'm-1', receivedAt: null }, { uuid: 'm-2', receivedAt: at }]);
    t.equal(listed.find((o) => o.id === plain)?.messages, undefined, 'orders without message orders have no `messages`');
  });

  t.test(`${kind}: BAOBs: versions, device offers, deletion`, async (t) => {
    const store = await make();
    t.teardown(() => store.close());
    const bytes = (s: string) => new TextEncoder().encode(s);
    const v1 = await store.publishBaob('dev', 'config.json', bytes('one'));
    t.match(v1, { key: 'config.json', version: 1, size: 3 });
    t.match(await store.publishBaob('dev', 'config.json', bytes('two!')), { version: 2, size: 4 }, 'each change adds one');
    t.same(await store.listBaobs('other'), [], 'BAOBs are per device');
    const got = await store.getBaob('dev', 'config.json');
    t.equal(Buffer.from(got!.data).toString(), 'two!');
    t.equal(got!.version, 2);

    t.same(await store.offerBaob('dev', 'config.json', bytes('stale'), 2), { stored: false, reason: 'not-newer', current: await infoOf(store, 'config.json') }, 'same version: refused');
    t.match(await store.offerBaob('dev', 'config.json', bytes('device'), 5), { stored: true, info: { version: 5, size: 6 } }, 'a newer version from the device wins');
    t.equal(Buffer.from((await store.getBaob('dev', 'config.json'))!.data).toString(), 'device');
    t.same(await store.offerBaob('dev', 'unknown', bytes('x'), 1), { stored: false, reason: 'unknown' }, 'a device cannot create a BAOB');

    t.equal(await store.deleteBaob('dev', 'config.json'), true);
    t.equal(await store.deleteBaob('dev', 'config.json'), false);
    t.same(await store.listBaobs('dev'), []);
    t.equal(await store.getBaob('dev', 'config.json'), null);
    t.same(await store.offerBaob('dev', 'config.json', bytes('back?'), 9), { stored: false, reason: 'unknown' }, 'nor revive a deleted one');
    t.match(await store.publishBaob('dev', 'config.json', bytes('new')), { version: 6 }, 'republished after the deleted version 5, so no device copy looks newer');
    await t.rejects(store.publishBaob('dev', 'a/b', bytes('x')), /"\/"/, 'a key with / is refused');
  });
}

async function infoOf(store: Store, key: string) {
  const { data: _data, ...info } = (await store.getBaob('dev', key))!;
  return info;
}

t.test('sqlite: BAOBs, tombstones and message receipts survive a restart', async (t) => {
  const file = join(tmp, 'baobs.db');
  const store = openSqliteStore(file);
  await store.publishBaob('dev', 'fw.bin', Buffer.alloc(100_000, 7));
  await store.publishBaob('dev', 'gone', Buffer.from('x'));
  await store.deleteBaob('dev', 'gone');
  const at = await store.recordMessageReceipt('dev', 'm-1');
  await store.close();

  const reopened = openSqliteStore(file);
  t.teardown(() => reopened.close());
  t.same((await reopened.listBaobs('dev')).map((b) => [b.key, b.version, b.size]), [['fw.bin', 1, 100_000]]);
  t.ok(Buffer.from((await reopened.getBaob('dev', 'fw.bin'))!.data).equals(Buffer.alloc(100_000, 7)));
  t.match(await reopened.publishBaob('dev', 'gone', Buffer.from('y')), { version: 2 }, 'the deleted version is remembered');
  t.equal(await reopened.recordMessageReceipt('dev', 'm-1'), at);
});

t.test('sqlite: a reopened store keeps queued orders, requeues in-flight ones, keeps data', async (t) => {
  const file = join(tmp, 'restart.db');
  const store = openSqliteStore(file);
  const a = await store.enqueueOrder('dev', section('A'));
  const b = await store.enqueueOrder('dev', section('B'));
  const c = await store.enqueueOrder('dev', section('C'));
  const source = await store.openOrderSource('dev', { prefetch: 4 });
  await source.next();
  await source.next();
  await source.settle(a, 'confirmed');
  await store.ingest('dev', { data: [{ series: [{ path: 'W1', values: [[1, 1.5]] }] }] });
  await store.close(); // closes the source too: b requeued

  const reopened = openSqliteStore(file);
  t.teardown(() => reopened.close());
  const again = await reopened.openOrderSource('dev', { prefetch: 4 });
  t.equal((await again.next())?.id, b);
  t.equal((await again.next())?.id, c);
  t.equal((await reopened.getOrder(a))?.state, 'confirmed');
  t.same((await reopened.readData('dev')).map((s) => s.values), [[[1, 1.5]]]);
});

t.test('sqlite: a file from before log dedupe (no log_digests table) opens, keeps its logs and dedupes from then on', async (t) => {
  const file = join(tmp, 'before-log-dedupe.db');
  const store = openSqliteStore(file);
  await store.ingest('dev', { logs: [logBatch('old')] });
  await store.close();
  const old = new Database(file);
  old.exec('DROP TABLE log_digests'); // as the file was before
  old.close();

  const reopened = openSqliteStore(file);
  t.teardown(() => reopened.close());
  await reopened.ingest('dev', { logs: [logBatch('new'), logBatch('new')] });
  await reopened.ingest('dev', { logs: [logBatch('new')] });
  t.same(await logMessages(reopened), ['old', 'new'], 'old logs kept; the new batch stored once');
});
