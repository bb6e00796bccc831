import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openDeviceDatabase } from '../../src/device/database.js';
import {
  MemoryExecutedOrders,
  SqliteExecutedOrders,
  type ExecutedOrders,
  type ExecutedOrdersOptions,
} from '../../src/device/executed-orders.js';

const dir = mkdtempSync(join(tmpdir(), 'ngtt-executed-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

const stores: [string, (options?: ExecutedOrdersOptions) => ExecutedOrders][] = [
  ['memory', (options) => new MemoryExecutedOrders(options)],
  ['sqlite', (options) => SqliteExecutedOrders.open(join(dir, `suite-${files++}.db`), options)],
];

for (const [name, open] of stores) {
  t.test(`${name}: remembers, bounded by count, oldest out first`, async (t) => {
    const ids = open({ maxEntries: 3 });
    t.teardown(() => ids.close());
    t.equal(ids.has('a'), false);
    for (const id of ['a', 'b', 'c']) ids.remember(id);
    t.equal(ids.has('a'), true);
    ids.remember('a'); // remembered again: now the newest
    ids.remember('d');
    t.same(['a', 'b', 'c', 'd'].map((id) => ids.has(id)), [true, false, true, true]);
    t.equal(ids.size, 3);
  });

  t.test(`${name}: bounded by age`, async (t) => {
    let now = 1_000_000;
    const ids = open({ maxAgeMs: 1000, now: () => now });
    t.teardown(() => ids.close());
    ids.remember('old');
    now += 600;
    ids.remember('new');
    now += 500;
    t.equal(ids.has('old'), false, 'older than maxAgeMs');
    t.equal(ids.has('new'), true);
    ids.remember('newest');
    t.equal(ids.size, 2, 'expired ids are dropped on the next remember');
  });
}

t.test('sqlite: durable across reopen, sharing the spool database', async (t) => {
  const file = join(dir, 'shared.db');
  const db = openDeviceDatabase(file);
  const first = SqliteExecutedOrders.open(db);
  for (let i = 0; i < 50; i++) first.remember(`order-${i}`);
  first.close();
  t.equal(db.open, true, 'a shared database stays open');
  db.close();

  const again = SqliteExecutedOrders.open(file, { maxEntries: 20 });
  t.teardown(() => again.close());
  t.equal(again.size, 20, 'reopened with a smaller bound: the oldest are gone');
  t.equal(again.has('order-49'), true);
  t.equal(again.has('order-30'), true);
  t.equal(again.has('order-29'), false);
  again.remember('order-50');
  t.equal(again.size, 20);
  t.equal(again.has('order-30'), false);
});
