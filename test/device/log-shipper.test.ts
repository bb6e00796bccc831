import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import t from 'tap';
import { encode } from '../../src/minijson/index.js';
import { parseLogRecords, type LogRecord } from '../../src/protocol/index.js';
import { LogShipper, ngttLevel, packMessage } from '../../src/device/log-shipper.js';

const T = 1_700_000_000_123;

t.test('when: unix µs, strictly increasing even within one millisecond or when the clock steps back', async (t) => {
  const shipper = new LogShipper();
  for (const time of [T, T, T, T + 1, T - 50]) shipper.add({ level: 30, time, msg: 'x' });
  t.same(
    shipper.drain().map((r) => r.when),
    [T * 1000, T * 1000 + 1, T * 1000 + 2, (T + 1) * 1000, (T + 1) * 1000 + 1],
  );
  const clocked = new LogShipper({ now: () => T });
  clocked.add({ level: 30, msg: 'no time field' });
  t.equal(clocked.drain()[0].when, T * 1000, 'falls back to the clock');
});

t.test('pino levels map to the spec levels', async (t) => {
  t.same([10, 20, 30, 40, 50, 60].map(ngttLevel), [10, 10, 20, 30, 40, 50]);
  t.same([25, 35, 100].map(ngttLevel), [10, 20, 50], 'custom levels fall in the band below them');
});

t.test('long messages are gzip+base64 only when that is shorter', async (t) => {
  t.equal(packMessage('short'), 'short');
  const repetitive = 'pathpoint W1 read ok; '.repeat(100);
  const packed = packMessage(repetitive);
  t.ok(typeof packed === 'object' && packed.encoding === 'base64-gzip');
  if (typeof packed === 'object') t.equal(gunzipSync(Buffer.from(packed.content, 'base64')).toString(), repetitive);
  t.ok(encode(packed).length < encode(repetitive).length, 'and the record really is smaller');
  const random = randomBytes(600).toString('base64');
  t.equal(packMessage(random), random, 'incompressible text stays as it is');
  t.equal(packMessage('a'.repeat(200)), 'a'.repeat(200), 'below compressFrom nothing is tried');
  t.type(packMessage('a'.repeat(200), 100), 'object');
});

t.test('bounded buffer drops the oldest and counts; drain takes oldest first', async (t) => {
  const shipper = new LogShipper({ capacity: 3 });
  for (let i = 0; i < 5; i++) shipper.add({ level: 30, time: T + i, msg: `m${i}` });
  t.equal(shipper.size, 3);
  t.equal(shipper.dropped, 2);
  t.same(shipper.drain(2).map((r) => r.message), ['m2', 'm3']);
  shipper.add({ level: 30, time: T + 9, msg: 'm5' });
  t.same(shipper.drain().map((r) => r.message), ['m4', 'm5'], 'order kept across the ring wrap');
  t.same(shipper.drain(), []);
});

t.test('next: a batch is due at maxBatchRecords, or maxBatchAgeMs after the oldest, or on flush', async (t) => {
  let now = T;
  const shipper = new LogShipper({ now: () => now, maxBatchRecords: 3, maxBatchAgeMs: 1000 });
  t.same(shipper.next(), { records: [] }, 'nothing buffered: nothing to wait for');
  shipper.push([{ service: 's', when: 1, message: 'a', level: 20 }]);
  now += 400;
  shipper.add({ level: 30, msg: 'b' });
  t.same(shipper.next(), { records: [], dueInMs: 600 }, 'the age counts from the oldest record');
  now += 600;
  t.same(shipper.next().records.map((r) => r.message), ['a', 'b']);
  for (const m of ['c', 'd', 'e', 'f']) shipper.add({ level: 30, msg: m });
  const full = shipper.next();
  t.same(full.records.map((r) => r.message), ['c', 'd', 'e'], 'full batches at once');
  t.equal(full.dueInMs, 1000, 'the rest waits');
  t.same(shipper.next({ flush: true }).records.map((r) => r.message), ['f']);
});

t.test('a pino logger feeds it through its destination stream', async (t) => {
  const shipper = new LogShipper({ service: 'fallback' });
  const logger = pino({ name: 'boiler', level: 'trace' }, shipper.stream);
  logger.info({ order: 'o-1', attempts: 2 }, 'order executed');
  logger.debug('details');
  const error = new Error('bus fault');
  logger.error(error);
  logger.fatal({ err: error }, 'giving up');
  pino({ level: 'info' }, shipper.stream).warn('unnamed');

  const records = shipper.drain();
  t.same(parseLogRecords(records), records, 'valid LOGS payload');
  t.same(records.map((r) => [r.service, r.level]), [['boiler', 20], ['boiler', 10], ['boiler', 40], ['boiler', 50], ['fallback', 30]]);
  t.equal(records[0].message, 'order executed {"order":"o-1","attempts":2}');
  t.equal(records[1].message, 'details');
  t.equal(records[2].message, 'bus fault');
  t.match(records[2].exception_text, /^Error: bus fault\n\s+at /);
  t.equal(records[3].message, 'giving up');
  t.match(records[3].exception_text, /bus fault/);
  t.equal(records[0].exception_text, undefined);
  const whens = records.map((r) => r.when);
  t.ok(whens.every((w, i) => i === 0 || w > whens[i - 1]));
});

t.test('never throws: bad lines become messages, a failing hook is counted', async (t) => {
  const shipper = new LogShipper({
    onRecord: () => {
      throw new Error('hook bug');
    },
  });
  shipper.stream.write('not json at all\n');
  t.equal(shipper.failures, 1);
  const quiet = new LogShipper();
  quiet.stream.write('not json at all\n');
  const cyclic: Record<string, unknown> = { level: 30, msg: 'cycle' };
  cyclic.self = cyclic;
  quiet.add(cyclic);
  const records: LogRecord[] = quiet.drain();
  t.same(records.map((r) => r.message), ['not json at all', 'cycle [unserializable]']);
});
