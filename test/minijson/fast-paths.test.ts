/**
 * The codec's fast paths against a plain oracle (test/helpers/reference-encoder.ts): byte for
 * byte on arbitrary values, on values around every size and integer boundary, across encoder
 * reuse with changing shapes and slabs, and for the decoder's short-string cache.
 * FUZZ_RUNS raises the count (npm run fuzz).
 */
import fc from 'fast-check';
import t from 'tap';
import { decode, DecodingError, encode, encodeWithReserve } from '../../src/minijson/index.js';
import { referenceEncode } from '../helpers/reference-encoder.js';
import { fromTagged, hex, loadVectors, sameValue, unhex, type Tagged } from '../helpers/tagged.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

/** Integers on both sides of every boundary the encoder branches on (2^7 ... 2^53). */
const boundaryInteger = fc
  .tuple(fc.constantFrom(7, 8, 15, 16, 24, 31, 32, 39, 40, 47, 48, 52, 53), fc.integer({ min: -3, max: 3 }), fc.boolean())
  .map(([e, d, negative]) => (negative ? -1 : 1) * (2 ** e + d))
  .filter((x) => Number.isSafeInteger(x));
/** Millisecond and microsecond timestamps, and numbers near 2^32 and 2^53. */
const timestamp = fc.oneof(
  fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }),
  fc.integer({ min: 1_600_000_000_000_000, max: 2_000_000_000_000_000 }).map((x) => x),
  fc.integer({ min: -(2 ** 20), max: 2 ** 20 }).map((d) => 2 ** 32 + d),
  fc.integer({ min: 0, max: 2 ** 20 }).map((d) => Number.MAX_SAFE_INTEGER - d),
  fc.integer({ min: 0, max: 2 ** 20 }).map((d) => -Number.MAX_SAFE_INTEGER + d),
);
/** Strings whose length sits at a header or code-path boundary (42/43, 64/65, 127/128, 255/256, 65 535/65 536 bytes). */
const boundaryString = fc
  .tuple(fc.constantFrom(0, 1, 3, 4, 8, 9, 12, 13, 16, 17, 42, 43, 64, 65, 127, 128, 255, 256, 1000, 65535, 65536), fc.integer({ min: -2, max: 2 }), fc.constantFrom('a', 'é', '€', '😀', 'ab'))
  .map(([n, d, unit]) => unit.repeat(Math.max(0, n + d)).slice(0, Math.max(0, n + d)))
  .filter((s) => s.isWellFormed());

const scalar = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  boundaryInteger,
  timestamp,
  fc.double(),
  fc.float(),
  fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
  fc.string({ maxLength: 70 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.uint8Array({ maxLength: 40 }),
);
const pair = fc.oneof(fc.tuple(timestamp, fc.oneof(fc.integer(), fc.double())), fc.tuple(fc.constant(false), timestamp, fc.string({ maxLength: 20 })));
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('list'), tie('object'), tie('map'), tie('series')),
  list: fc.array(tie('value'), { maxLength: 20 }),
  // Up to 20 keys with some undefined values: the header is written before the count is known.
  object: fc.dictionary(fc.string({ maxLength: 12 }), fc.option(tie('value'), { nil: undefined, freq: 5 }), { maxKeys: 20 }),
  map: fc.array(fc.tuple(fc.oneof(fc.integer(), fc.string({ maxLength: 5 })), tie('value')), { maxLength: 8 }).map((entries) => new Map(entries)),
  series: fc.record({ path: fc.string({ maxLength: 8 }), values: fc.array(pair, { maxLength: 30 }) }),
}));

const sameBytes = (v: unknown) => hex(encode(v)) === referenceEncode(v).toString('hex');

t.test('the oracle itself matches the reference vectors', async (t) => {
  for (const file of ['encode.json', 'random.json']) {
    const vectors = loadVectors<{ name: string; value: Tagged; hex: string }>(file);
    const wrong = vectors.filter((v) => referenceEncode(fromTagged(v.value)).toString('hex') !== v.hex).map((v) => v.name);
    t.same(wrong, [], `${file}: ${vectors.length} vectors`);
  }
});

t.test('encode writes the oracle bytes for arbitrary values', async (t) => {
  fc.assert(fc.property(value, sameBytes), { numRuns: RUNS * 2 });
  t.pass();
});

t.test('integers around every boundary, timestamps, and strings at every header size', async (t) => {
  fc.assert(fc.property(fc.oneof(boundaryInteger, timestamp), (x) => sameBytes(x) && decode(encode(x)) === x), { numRuns: RUNS * 2 });
  fc.assert(fc.property(boundaryString, (s) => sameBytes(s) && decode(encode(s)) === s && decode(encode({ [s.slice(0, 80)]: s }))!.constructor === Object), { numRuns: RUNS });
  for (let e = 31; e <= 53; e++) {
    for (const x of [2 ** e - 1, 2 ** e, 2 ** e + 1, -(2 ** e) - 1, -(2 ** e), -(2 ** e) + 1]) {
      if (Number.isSafeInteger(x) && !sameBytes(x)) t.fail(`integer ${x}`);
    }
  }
  t.equal(hex(encode(1_760_000_000_123)), '18060199c82cc07b', 'a millisecond timestamp is a 6-byte integer');
  t.equal(hex(encode(-0)), '0980000000', '-0 stays a float');
});

t.test('the encoder keeps earlier results intact across shapes, slabs and a large encode', async (t) => {
  const big = { blob: 'x'.repeat(300_000), values: Array.from({ length: 5000 }, (_, j) => [1.7e12 + j, j / 4]) };
  const bigHex = referenceEncode(big).toString('hex');
  fc.assert(
    fc.property(fc.array(fc.tuple(value, fc.nat({ max: 16 })), { minLength: 1, maxLength: 40 }), fc.nat({ max: 3 }), (items, bigAt) => {
      // Results are views into shared slabs: none may be overwritten by a later encode,
      // including one too large for the current slab (which moves to a bigger one).
      const results: { bytes: Uint8Array; expected: string; reserve: number }[] = [];
      items.forEach(([v, reserve], i) => {
        if (i === bigAt) results.push({ bytes: encode(big), expected: bigHex, reserve: 0 });
        results.push({ bytes: encodeWithReserve(v, reserve), expected: referenceEncode(v).toString('hex'), reserve });
      });
      return results.every(
        ({ bytes, expected, reserve }) => hex(bytes.subarray(reserve)) === expected && bytes.subarray(0, reserve).every((b) => b === 0),
      );
    }),
    { numRuns: Math.max(20, RUNS / 5) },
  );
  t.pass();
});

t.test('objects: own enumerable keys only, in order, whatever their prototype', async (t) => {
  const inherited = Object.create({ inherited: 1, also: 2 }) as Record<string, unknown>;
  inherited.own = 3;
  t.equal(hex(encode(inherited)), hex(encode({ own: 3 })), 'inherited enumerable properties are left out');
  const bare = Object.create(null) as Record<string, unknown>;
  bare.b = 1;
  bare.a = 2;
  bare[2] = 'two';
  t.equal(hex(encode(bare)), hex(referenceEncode(bare)), 'a null-prototype object');
  t.same(Object.keys(decode(encode(bare)) as object), ['2', 'b', 'a']);
  t.equal(hex(encode({ hasOwnProperty: 1, x: 2 })), hex(referenceEncode({ hasOwnProperty: 1, x: 2 })), 'an own hasOwnProperty key');
  class Point {
    constructor(
      public x: number,
      public y: number,
    ) {}
    get norm() {
      return Math.hypot(this.x, this.y);
    }
  }
  t.same(decode(encode(new Point(3, 4))), { x: 3, y: 4 }, 'class instances: fields, not prototype getters');
  // The header is written before the count is known: every count where its size changes.
  for (const n of [15, 16, 17, 255, 256, 257, 65536]) {
    for (const holes of n > 257 ? [1] : [0, 1, 2]) {
      const wide: Record<string, unknown> = {};
      for (let i = 0; i < n + holes; i++) wide[`k${i}`] = i % 3 === 1 && i / 3 < holes ? undefined : i;
      if (hex(encode(wide)) !== hex(referenceEncode(wide))) t.fail(`${n} keys and ${holes} undefined`);
    }
  }
});

t.test('the decoder reads every string back, cached or not', async (t) => {
  // Few distinct strings reused (cache hits) mixed with many (collisions and evictions).
  const word = fc.oneof(fc.constantFrom('path', 'values', 'W1', 'f4', 'timeout', 'a', '', 'ab', 'abc', 'abcd', 'é', 'service'), fc.string({ maxLength: 17 }), fc.string({ unit: 'binary', maxLength: 17 }));
  fc.assert(
    fc.property(fc.array(fc.tuple(word, word), { maxLength: 60 }), (pairs) => {
      const obj = pairs.map(([k, v]) => ({ [k]: v, v }));
      return sameValue(decode(encode(obj)), obj.map((o) => Object.fromEntries(Object.entries(o))));
    }),
    { numRuns: RUNS },
  );
  // Strings sharing their first and last four bytes (what the cache hashes) but not the middle.
  const look = ['abcd0000wxyz', 'abcd0001wxyz', 'abcd00000001wxyz', 'abcd00000002wxyz', 'abcdwxyz', 'abcdXwxyz'];
  for (let round = 0; round < 3; round++) t.same(decode(encode(look)), look, `look-alikes, round ${round}`);
  t.end();
});

t.test('invalid UTF-8 is refused at any length; a genuine U+FFFD is kept', async (t) => {
  for (const n of [1, 3, 4, 16, 17, 100, 5000]) {
    const ok = 'a'.repeat(n);
    t.same(decode(encode(ok)), ok);
    const bytes = Buffer.from(encode(ok));
    bytes[bytes.length - 1] = 0xff; // last byte of the string: invalid in UTF-8
    t.throws(() => decode(bytes), DecodingError, `invalid byte in a ${n}-byte string`);
    // After the valid one was cached, the same length with a bad byte must still fail.
    t.throws(() => decode(Buffer.from(bytes)), DecodingError, `and again (${n})`);
  }
  for (const s of ['\ufffd', 'x\ufffdy', '\ufffd'.repeat(40), 'é\ufffd'.repeat(3000)]) t.equal(decode(encode(s)), s);
  t.throws(() => decode(unhex('83' + 'eda080')), DecodingError, 'an encoded surrogate is not UTF-8');
  t.throws(() => decode(unhex('82' + 'c0af')), DecodingError, 'an overlong form is not UTF-8');
});

t.test('decoding a view into a larger buffer reads only the view', async (t) => {
  const payload = encode([1_760_000_000_000, 1.5, -2, 'x']);
  const big = Buffer.alloc(payload.length + 20, 0xee);
  big.set(payload, 10);
  t.same(decode(big.subarray(10, 10 + payload.length)), [1_760_000_000_000, 1.5, -2, 'x']);
  t.throws(() => decode(big.subarray(10, 10 + payload.length - 1)), DecodingError, 'one byte short fails, though the buffer goes on');
  // The list fast paths (double, ms timestamp, 16-bit int) at the very end of the input, and cut short.
  for (const v of [[0.1], [1_760_000_000_000], [-300], [40_000], [0.1, 1_760_000_000_000, -300, 40_000]]) {
    const bytes = Buffer.from(encode(v));
    t.same(decode(bytes), v);
    const padded = Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.alloc(16, 0x0a)]);
    for (let cut = 1; cut < bytes.length; cut++) t.throws(() => decode(padded.subarray(0, cut)), DecodingError, `${JSON.stringify(v)} cut at ${cut}`);
  }
});
