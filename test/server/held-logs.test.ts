/**
 * HeldLogs (issue #16): log batches a gateway received but could not store are kept in memory,
 * bounded, and stored once the store is available again.
 */
import t from 'tap';
import pino from 'pino';
import { FrameType, type LogRecord } from '../../src/protocol/index.js';
import { HeldLogs } from '../../src/server/held-logs.js';
import { Availability, createMemoryStore, type Store, type Uploads } from '../../src/server/store/index.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';
import { until } from '../helpers/wait.js';

/** A store that fails while `failing`, reports `available`, and records what it stored. */
function flakyStore() {
  const listeners = new Set<(available: boolean) => void>();
  const state = {
    available: true,
    failing: false,
    stored: [] as { deviceId: string; messages: string[] }[],
    setAvailable(available: boolean) {
      state.available = available;
      state.failing = !available;
      for (const l of listeners) l(available);
    },
  };
  const store = {
    async ingest(deviceId: string, uploads: Uploads) {
      if (state.failing) throw new Error('broker down');
      for (const records of uploads.logs ?? []) state.stored.push({ deviceId, messages: records.map((r) => String(r.message)) });
    },
    available: () => state.available,
    onAvailabilityChange(listener: (available: boolean) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  } as unknown as Store;
  return { store, state };
}

const batch = (...messages: string[]): LogRecord[] => messages.map((message, i) => ({ service: 'svc', when: 1_700_000_000_000_000 + i, message, level: 2 }));
const logger = pino({ level: 'silent' });

t.test('held while the store is unavailable, stored in order once it is back', async (t) => {
  const { store, state } = flakyStore();
  const held = new HeldLogs({ store, logger });
  t.teardown(() => held.close());
  state.setAvailable(false);
  held.hold('dev-a', [batch('a1', 'a2'), batch('a3')]);
  held.hold('dev-b', [batch('b1')]);
  await held.settled();
  t.equal(held.size, 3, 'three batches held');
  t.same(state.stored, [], 'nothing stored while unavailable');

  state.setAvailable(true);
  await until(() => held.size === 0, 'the held batches to be stored');
  t.same(state.stored, [
    { deviceId: 'dev-a', messages: ['a1', 'a2'] },
    { deviceId: 'dev-a', messages: ['a3'] },
    { deviceId: 'dev-b', messages: ['b1'] },
  ]);
  t.equal(held.stored, 3);
});

t.test('an ingest that fails while the store reports available is retried with backoff', async (t) => {
  const { store, state } = flakyStore();
  const held = new HeldLogs({ store, logger, backoff: { baseMs: 1, maxMs: 5, jitter: 0 } });
  t.teardown(() => held.close());
  state.failing = true;
  held.hold('dev-a', [batch('x')]);
  await held.settled();
  t.equal(held.size, 1, 'held after the failed attempt');
  state.failing = false;
  await until(() => held.size === 0, 'the retry to store the batch');
  t.same(state.stored, [{ deviceId: 'dev-a', messages: ['x'] }]);
});

t.test('bounded: beyond maxBatches new batches are dropped and counted', async (t) => {
  const { store, state } = flakyStore();
  const held = new HeldLogs({ store, logger, maxBatches: 2 });
  t.teardown(() => held.close());
  state.setAvailable(false);
  held.hold('dev-a', [batch('1'), batch('2'), batch('3')]);
  t.equal(held.size, 2);
  t.equal(held.dropped, 1);
  state.setAvailable(true);
  await until(() => held.size === 0, 'the held batches to be stored');
  t.same(state.stored.map((s) => s.messages[0]), ['1', '2'], 'the first two kept, the third dropped');
});

t.test('a session closed because the store went away reads the LOGS already on their way into the held logs (real TLS)', async (t) => {
  const health = new Availability();
  const memory = createMemoryStore();
  // The memory store with a link that can go down, as the networked stores have.
  const ingest = memory.ingest.bind(memory);
  const store: Store = Object.assign(memory, {
    ingest: (deviceId: string, uploads: Uploads) => (health.available() ? ingest(deviceId, uploads) : Promise.reject(new Error('broker down'))),
    available: () => health.available(),
    onAvailabilityChange: (listener: (available: boolean, reason?: string) => void) => health.onChange(listener),
  });
  const server = await startTestServer(await makePki(), { store });
  /** One metric's value from /metrics (what an operator's Prometheus sees). */
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  };
  t.teardown(() => server.close());
  const device = await server.connect('dev-drain');
  t.teardown(() => device.destroy());
  await device.ping();

  health.set('broker', false, 'stopped'); // the server starts closing the session, reading on
  // An original client: LOGS with no receipt PING behind them, already on their way.
  device.send(0, FrameType.LOGS, batch('on the wire at the cut'));
  device.send(5, FrameType.DATA_STREAM, [{ path: 'W1', values: [[1, 1]] }]);
  await device.closed;
  t.equal(device.received.filter((f) => f.type === FrameType.DATA_STREAM_CONFIRM).length, 0, 'data is not confirmed: the device sends it again');
  t.same(await memory.readLogs('dev-drain'), [], 'nothing stored while the broker is down');
  t.equal(await metric('ngtt_held_log_batches'), 1, '/metrics shows the held batch');
  health.set('broker', true);
  await until(async () => (await memory.readLogs('dev-drain')).length === 1, 'the held batch to be stored once the broker is back');
  t.same((await memory.readLogs('dev-drain')).map((r) => r.message), ['on the wire at the cut']);
  t.equal(await metric('ngtt_held_log_batches'), 0);
  t.equal(await metric('ngtt_held_log_batches_stored_total'), 1);
  t.same(await memory.readData('dev-drain'), [], 'the unconfirmed data was not stored behind the device\'s back');
});
