/**
 * The server fed random frames and random bytes over real TLS connections from an authenticated
 * device (fast-check). Frames of every type, with random tids and payloads that are random
 * bytes, random MiniJSON values or nearly valid DATA_STREAM / LOGS / section shapes. Throughout,
 * another device is served; after the storm it completes an order round trip, nothing of the
 * fuzzing device is left in flight, and the server process never threw (tap fails on an
 * uncaught exception). The codec and the frame decoder have their own properties in
 * test/minijson/property.test.ts and test/protocol/frame-property.test.ts.
 *
 * FUZZ_RUNS=2000 (npm run fuzz) runs longer; the default is a few seconds.
 */
import fc from 'fast-check';
import t from 'tap';
import { encode } from '../../src/minijson/index.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { until, within } from '../helpers/wait.js';

/** One run is a whole TLS connection: FUZZ_RUNS (codec property runs) / 100, 60 by default. */
const RUNS = process.env.FUZZ_RUNS ? Math.max(10, Math.round(Number(process.env.FUZZ_RUNS) / 100)) : 60;
const pki = await makePki();

const scalar = fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 8 }), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), fc.constant(false), fc.constant(null));
const nearlyValid = fc.oneof(
  // DATA_STREAM-ish
  fc.array(fc.record({ path: fc.oneof(fc.string({ maxLength: 6 }), scalar), values: fc.array(fc.oneof(fc.tuple(fc.nat(), scalar), fc.tuple(fc.constant(false), fc.nat(), fc.constantFrom('timeout', 'bogus')), scalar), { maxLength: 4 }) }, { requiredKeys: [] }), { maxLength: 3 }),
  // LOGS-ish
  fc.array(fc.record({ service: scalar, when: scalar, message: fc.oneof(scalar, fc.record({ encoding: fc.constant('base64-gzip'), content: fc.string() })), level: scalar }, { requiredKeys: [] }), { maxLength: 3 }),
  // a reject reason, a BAOB request
  fc.record({ reason: scalar }),
  fc.dictionary(fc.string({ maxLength: 6 }), scalar, { maxKeys: 3 }),
  fc.jsonValue({ maxDepth: 3 }),
);
const payload = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ maxLength: 64 }),
  nearlyValid.map((v) => encode(v)),
);
const frame = fc.record({
  tid: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff })),
  type: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 0xffff })),
  payload,
});
const chunk = fc.oneof(
  { weight: 4, arbitrary: frame.map((f) => encodeFrame(f.tid, f.type, f.payload)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)) },
);

t.test(`${RUNS} storms of random frames and bytes: the server stays up and serves another device`, async (t) => {
  const server = await startTestServer(pki, { maxFrameLength: 4096 });
  t.teardown(() => server.close());
  const good = await server.connect('dev-good');
  t.teardown(() => good.destroy());
  good.send(0, FrameType.FETCH_ORDERS);
  // Orders for the fuzzing device: random ORDER_CONFIRMs may settle some, none may get stuck.
  for (let i = 0; i < 10; i++) await server.enqueueOrder('dev-fuzz', readSection(`Z${i}`));

  let closedByServer = 0;
  let frames = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(chunk, { minLength: 1, maxLength: 25 }), async (chunks) => {
      const fuzz = await server.connect('dev-fuzz');
      fuzz.send(0, FrameType.FETCH_ORDERS);
      for (const c of chunks) fuzz.sendRaw(c);
      frames += chunks.length;
      // Either the server closes the connection or it still answers a PING after the storm.
      const answered = fuzz.ping(0x7ffe).then(
        () => true,
        () => false,
      );
      const outcome = await within(Promise.race([answered, fuzz.closed.then(() => false)]), 'a PING echo or the close', 5000);
      if (!outcome) closedByServer++;
      await fuzz.destroy();
    }),
    { numRuns: RUNS },
  );

  // The other device was never disturbed: it still gets orders and stores data.
  const id = await server.enqueueOrder('dev-good', readSection('after the storm'));
  const order = await good.takeOrder();
  t.equal(order.id, id, 'an order round trip after the storm');
  good.send(order.tid, FrameType.ORDER_CONFIRM);
  good.send(1, FrameType.DATA_STREAM, [{ path: 'G', values: [[1, 1]] }]);
  await good.takeType(FrameType.DATA_STREAM_CONFIRM, 1);
  await until(async () => (await server.store.getOrder(id))?.state === 'confirmed', 'confirmed');
  t.equal(server.counters('dev-good').protocolErrors, 0);
  t.same(server.logs.filter((l) => (l.level as number) >= 50).map((l) => l.msg), [], 'nothing logged as an error (no store or session failure)');
  await until(async () => (await server.store.listOrders('dev-fuzz', { state: 'in-flight' })).length === 0, 'no order of the fuzzing device left in flight');
  t.comment(`reliability: server fuzz: ${RUNS} connections, ${frames} random frames/chunks, ${closedByServer} closed by the server, server up, other device served`);
});
