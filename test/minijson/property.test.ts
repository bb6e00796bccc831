/**
 * Property tests: round trips for arbitrary values, and arbitrary or mutated bytes either
 * decode or throw DecodingError — nothing else. FUZZ_RUNS raises the count (npm run fuzz).
 */
import fc from 'fast-check';
import t from 'tap';
import { decode, DecodingError, encode } from '../../src/minijson/index.js';
import { sameValue } from '../helpers/tagged.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const scalar = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(), // includes NaN, ±Infinity, -0
  fc.float().map((x) => x),
  fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }),
  fc.string({ unit: 'binary' }),
  fc.string({ maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }).map((b) => new Uint8Array(b)),
);

const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('list'), tie('object'), tie('map')),
  list: fc.array(tie('value'), { maxLength: 20 }),
  object: fc.dictionary(fc.string({ unit: 'binary', maxLength: 20 }), tie('value'), { maxKeys: 20 }),
  map: fc.array(fc.tuple(fc.integer(), tie('value')), { maxLength: 20 }).map((entries) => new Map(entries)),
}));

/**
 * What the wire can tell apart: a Map whose keys are all strings (an empty one included) is
 * sent as an object, as the reference sends a dict, and so comes back as one; a bigint within
 * +-(2^53-1) is an integer on the wire and comes back as a number.
 */
function normalise(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(normalise);
  if (v instanceof Map) {
    const entries = [...v].map(([k, x]) => [k, normalise(x)] as const);
    return entries.every(([k]) => typeof k === 'string') ? Object.fromEntries(entries) : new Map(entries);
  }
  if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: normalise(x), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return v;
}

t.test('decode(encode(x)) equals x', async (t) => {
  fc.assert(
    fc.property(value, (v) => sameValue(decode(encode(v)), normalise(v))),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} arbitrary values round-tripped`);
});

function decodesOrRefuses(bytes: Uint8Array): boolean {
  try {
    decode(bytes);
    return true;
  } catch (err) {
    if (err instanceof DecodingError) return true;
    throw err;
  }
}

t.test('arbitrary bytes decode or throw DecodingError', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), decodesOrRefuses), { numRuns: RUNS * 5 });
  t.pass();
});

t.test('mutated valid encodings decode or throw DecodingError', async (t) => {
  const mutated = fc
    .tuple(value, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat())
    .map(([v, flips, cut]) => {
      const bytes = new Uint8Array(encode(v));
      for (const [at, b] of flips) if (bytes.length) bytes[at % bytes.length] = b;
      return bytes.subarray(0, bytes.length ? cut % (bytes.length + 1) : 0);
    });
  fc.assert(fc.property(mutated, decodesOrRefuses), { numRuns: RUNS * 3 });
  t.pass();
});

t.test('a header claiming 4 billion elements allocates nothing', async (t) => {
  const before = process.memoryUsage().heapUsed;
  for (const h of ['10ffffffff', '12ffffffff', '13ffffffff', '0effffffff', '1bffffffff']) {
    t.throws(() => decode(Buffer.from(h + '00'.repeat(16), 'hex')), DecodingError, h);
  }
  t.ok(process.memoryUsage().heapUsed - before < 50 * 1024 * 1024, 'heap did not grow by a huge allocation');
});
