import t from 'tap';
import { decode, decodePrefix, DecodingError, encode, EncodingError, MiniJSONError } from '../../src/minijson/index.js';
import { hex, unhex } from '../helpers/tagged.js';

const roundTrip = (v: unknown) => decode(encode(v));

t.test('error classes share one base', async (t) => {
  t.ok(new EncodingError('x') instanceof MiniJSONError);
  t.ok(new DecodingError('x', 0) instanceof MiniJSONError);
});

t.test('numbers: integers, floats, -0, NaN, bigint', async (t) => {
  t.equal(hex(encode(1.5)), '093fc00000', '1.5 fits a single');
  t.equal(hex(encode(0.1)), '0a3fb999999999999a', '0.1 needs a double');
  t.ok(Object.is(roundTrip(-0), -0), '-0 survives (as a float)');
  t.ok(Number.isNaN(roundTrip(NaN)));
  t.equal(roundTrip(Infinity), Infinity);
  t.equal(roundTrip(1.7e12 + 123), 1.7e12 + 123, 'ms timestamps stay integers');
  t.equal(hex(encode(5n)), '0305', 'small bigint uses the smallest type');
  t.equal(roundTrip(2n ** 64n), 2n ** 64n);
  t.equal(roundTrip(-(2n ** 70n)), -(2n ** 70n));
  t.equal(roundTrip(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  t.equal(roundTrip(-Number.MAX_SAFE_INTEGER), -Number.MAX_SAFE_INTEGER);
  t.equal(roundTrip(2n ** 53n), 2n ** 53n, 'beyond safe decodes to bigint');
  t.equal(roundTrip(-(2n ** 53n)), -(2n ** 53n));
  for (let e = 0; e < 53; e++) {
    for (const x of [2 ** e, 2 ** e - 1, -(2 ** e), -(2 ** e) + 1, -(2 ** e) - 1]) {
      if (Number.isSafeInteger(x) && roundTrip(x) !== x) t.fail(`integer ${x}`);
    }
  }
  t.throws(() => encode(1n << 2100n), EncodingError, 'too long for a length byte');
});

t.test('objects, Maps and binary', async (t) => {
  t.same(roundTrip({ a: [1, 'x', null, true, false], b: {} }), { a: [1, 'x', null, true, false], b: {} });
  const m = new Map<unknown, unknown>([[1, 'a'], ['b', 2]]);
  const back = roundTrip(m);
  t.ok(back instanceof Map, 'a Map with non-string keys decodes to a Map');
  t.same([...(back as Map<unknown, unknown>)], [[1, 'a'], ['b', 2]]);
  t.equal(hex(encode(new Map([['a', 1]]))), hex(encode({ a: 1 })), 'a Map of short string keys is an object');
  const long = 'k'.repeat(300);
  t.same(roundTrip({ [long]: 1 }), { [long]: 1 }, 'a long key goes out as an any-key map');
  const bytes = roundTrip(Buffer.from('hello'));
  t.ok(bytes instanceof Uint8Array);
  t.equal(Buffer.from(bytes as Uint8Array).toString(), 'hello');
  t.same(roundTrip({ a: 1, skip: undefined, b: 2 }), { a: 1, b: 2 }, 'undefined properties are left out, as in JSON');
  const many: Record<string, number> = {};
  for (let i = 0; i < 16; i++) many['k' + i] = i;
  many.gone = undefined as unknown as number;
  t.same(roundTrip(many), Object.fromEntries(Object.entries(many).filter(([k]) => k !== 'gone')), 'header shrinks when undefined drops the count below 16');
  t.equal(roundTrip(new Date(0)), '1970-01-01T00:00:00.000Z', 'toJSON is honoured like JSON.stringify');
  t.same(roundTrip('zażółć 😀'), 'zażółć 😀');
  t.same(roundTrip('€'.repeat(100)), '€'.repeat(100));
});

t.test('encoding errors name the path', async (t) => {
  t.throws(() => encode({ a: [1, undefined] }), { name: 'EncodingError', path: '$.a[1]' });
  t.throws(() => encode({ f: () => 1 }), { name: 'EncodingError', path: '$.f' });
  t.throws(() => encode([Symbol('s')]), { name: 'EncodingError', path: '$[0]' });
  t.throws(() => encode({ 'odd key': [new Int16Array(2)] }), { name: 'EncodingError', path: '$["odd key"][0]' });
  t.throws(() => encode('\ud800'), { name: 'EncodingError' }, 'lone surrogate');
  const cyclic: Record<string, unknown> = { a: { b: {} } };
  (cyclic.a as any).b.c = cyclic;
  t.throws(() => encode(cyclic), { name: 'EncodingError', path: '$.a.b.c', reason: /cycle/ });
  let deep: unknown = 1;
  for (let i = 0; i < 600; i++) deep = [deep];
  t.throws(() => encode(deep), { name: 'EncodingError', reason: /deeper than 512/ });
  t.doesNotThrow(() => encode(deep, { maxDepth: 1000 }));
});

t.test('results stay valid after later encodes', async (t) => {
  const first = encode({ x: 'first' });
  const firstHex = hex(first);
  for (let i = 0; i < 5000; i++) encode({ i, pad: 'y'.repeat(i % 300) });
  t.equal(hex(first), firstHex);
  const big = encode('z'.repeat(200_000));
  t.equal((decode(big) as string).length, 200_000);
});

t.test('decoding errors are DecodingError with an offset', async (t) => {
  t.throws(() => decode(unhex('4103')), { name: 'DecodingError', offset: 2 });
  t.throws(() => decode(unhex('3f')), { name: 'DecodingError', offset: 0, message: /unknown type byte 0x3f/ });
  t.throws(() => decode(unhex('10ffffffff')), { message: /claims 4294967295/ }, 'huge count refused before allocating');
  t.throws(() => decode(unhex('1bffffffff00')), DecodingError);
  t.throws(() => decode('abc' as unknown as Uint8Array), DecodingError);
  const deep = Buffer.concat([Buffer.alloc(1000, 0x41), Buffer.from([0x08])]);
  t.throws(() => decode(deep), { name: 'DecodingError', message: /deeper than 512/ });
  t.same(decode(deep, { maxDepth: 2000 }) !== undefined, true);
  t.same(decodePrefix(unhex('0301ffff')), { value: 1, length: 2 });
});

t.test('__proto__ and constructor keys cannot pollute', async (t) => {
  const evil = unhex('52' + '095f5f70726f746f5f5f' + '5101' + '78' + '0301' + '0b636f6e7374727563746f72' + '0301');
  const obj = decode(evil) as Record<string, unknown>;
  t.equal(Object.getPrototypeOf(obj), Object.prototype, 'prototype unchanged');
  t.same(Object.keys(obj), ['__proto__', 'constructor']);
  t.equal(({} as any).x, undefined, 'Object.prototype untouched');
  t.equal((obj as any).x, undefined);
  // The same through an any-key map.
  const viaMap = decode(encode(new Map<unknown, unknown>([['__proto__', { polluted: true }], [1, 2]])));
  t.ok(viaMap instanceof Map);
  const viaStringMap = decode(unhex('61' + '89' + Buffer.from('__proto__').toString('hex') + '5101780301')) as any;
  t.equal(viaStringMap.x, undefined);
  t.equal(({} as any).polluted, undefined);
  t.equal(hex(encode(obj)), hex(evil), 'and it encodes back the same');
});

t.test('the key cache never returns a wrong key', async (t) => {
  // 20 000 distinct short keys through a 4 096-slot cache: collisions are certain.
  const objects = Array.from({ length: 2000 }, (_, i) =>
    Object.fromEntries(Array.from({ length: 10 }, (_, j) => [`k${(i * 7919 + j * 104729) % 100000}`, j])),
  );
  const back = decode(encode(objects)) as Record<string, number>[];
  let wrong = 0;
  back.forEach((o, i) => {
    if (JSON.stringify(Object.entries(o)) !== JSON.stringify(Object.entries(objects[i]))) wrong++;
  });
  t.equal(wrong, 0);
  // Same bytes but invalid UTF-8 after a cached ASCII key must still fail.
  t.same(decode(unhex('5101610301')), { a: 1 });
  t.throws(() => decode(unhex('5101ff0301')), DecodingError);
});
