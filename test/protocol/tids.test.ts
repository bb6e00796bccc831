import t from 'tap';
import { MAX_TID, ProtocolError, TidAllocator } from '../../src/protocol/index.js';

t.test('allocates 1..0x7FFF, each once, then fails clearly', async (t) => {
  const a = new TidAllocator();
  const seen = new Set<number>();
  for (let i = 0; i < MAX_TID; i++) seen.add(a.allocate());
  t.equal(seen.size, MAX_TID);
  t.equal(Math.min(...seen), 1);
  t.equal(Math.max(...seen), 0x7fff);
  t.equal(a.available, 0);
  t.throws(() => a.allocate(), { name: 'ProtocolError', code: 'TIDS_EXHAUSTED' });
  t.ok(a.free(1234));
  t.equal(a.allocate(), 1234, 'the only free tid is found');
});

t.test('free reports unknown tids and does not reuse a tid at once', async (t) => {
  const a = new TidAllocator();
  const first = a.allocate();
  t.ok(a.free(first));
  t.notOk(a.free(first), 'double free is reported');
  t.notOk(a.free(0));
  t.not(a.allocate(), first);
  a.reset();
  t.equal(a.inUse, 0);
});
