/**
 * A deliberately plain MiniJSON encoder, written from the format's rules (and checked against
 * the reference vectors) rather than for speed: the oracle the fast encoder's bytes are
 * compared with in property tests. One Buffer per value, BigInt for every integer.
 */
import { T } from '../../src/minijson/types.js';

const bytes = (...b: number[]) => Buffer.from(b);

function be(value: bigint, n: number): Buffer {
  const out = Buffer.alloc(n);
  let v = value < 0n ? (1n << BigInt(8 * n)) + value : value;
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** A size header: short form when n <= shortMax (-1: none), else the 8/16/32-bit type. */
function sizeHeader(n: number, short: number, shortMax: number, t8: number, t16: number, t32: number): Buffer {
  if (n <= shortMax) return bytes(short | n);
  if (n <= 0xff) return bytes(t8, n);
  if (n <= 0xffff) return Buffer.concat([bytes(t16), be(BigInt(n), 2)]);
  return Buffer.concat([bytes(t32), be(BigInt(n), 4)]);
}

/** The smallest integer type, in the reference's order of preference. */
function integer(v: bigint): Buffer {
  const fits = (lo: bigint, hi: bigint) => v >= lo && v <= hi;
  if (fits(-128n, 127n)) return Buffer.concat([bytes(T.INT8), be(v, 1)]);
  if (fits(0n, 255n)) return bytes(T.UINT8, Number(v));
  if (fits(-32768n, 32767n)) return Buffer.concat([bytes(T.INT16), be(v, 2)]);
  if (fits(0n, 65535n)) return Buffer.concat([bytes(T.UINT16), be(v, 2)]);
  if (fits(0n, 2n ** 24n - 1n)) return Buffer.concat([bytes(T.UINT24), be(v, 3)]);
  if (fits(-(2n ** 31n), 2n ** 31n - 1n)) return Buffer.concat([bytes(T.INT32), be(v, 4)]);
  if (fits(0n, 2n ** 32n - 1n)) return Buffer.concat([bytes(T.UINT32), be(v, 4)]);
  let n = 1;
  while (!fits(-(1n << BigInt(8 * n - 1)), (1n << BigInt(8 * n - 1)) - 1n)) n++;
  if (n > 255) throw new Error('integer needs more than 255 bytes');
  return Buffer.concat([bytes(T.BIGINT, n), be(v, n)]);
}

function float(x: number): Buffer {
  if (Math.fround(x) === x || Number.isNaN(x)) {
    const b = Buffer.alloc(5);
    b[0] = T.FLOAT32;
    b.writeFloatBE(x, 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = T.FLOAT64;
  b.writeDoubleBE(x, 1);
  return b;
}

function string(s: string): Buffer {
  if (!s.isWellFormed()) throw new Error('lone surrogate');
  const utf8 = Buffer.from(s, 'utf8');
  return Buffer.concat([sizeHeader(utf8.length, T.SHORT_STR, 127, T.STR8, T.STR16, T.STR32), utf8]);
}

function entries(list: [unknown, unknown][]): Buffer {
  const shortKeys = list.every(([k]) => typeof k === 'string' && Buffer.byteLength(k) <= 255);
  if (shortKeys) {
    const parts = list.map(([k, v]) => Buffer.concat([bytes(Buffer.byteLength(k as string)), Buffer.from(k as string, 'utf8'), referenceEncode(v)]));
    return Buffer.concat([sizeHeader(list.length, T.SHORT_OBJ, 15, T.OBJ8, T.OBJ16, T.OBJ32), ...parts]);
  }
  const parts = list.map(([k, v]) => Buffer.concat([referenceEncode(k), referenceEncode(v)]));
  return Buffer.concat([sizeHeader(list.length, T.SHORT_MAP, 15, T.MAP8, T.MAP16, T.MAP32), ...parts]);
}

export function referenceEncode(value: unknown): Buffer {
  if (value === null) return bytes(T.NULL);
  if (value === true) return bytes(T.TRUE);
  if (value === false) return bytes(T.FALSE);
  if (typeof value === 'bigint') return integer(value);
  if (typeof value === 'number') return Number.isSafeInteger(value) && !Object.is(value, -0) ? integer(BigInt(value)) : float(value);
  if (typeof value === 'string') return string(value);
  if (value instanceof Uint8Array) return Buffer.concat([sizeHeader(value.length, 0, -1, T.BIN8, T.BIN16, T.BIN32), value]);
  if (Array.isArray(value)) {
    if (value.includes(undefined)) throw new Error('undefined in a list');
    return Buffer.concat([sizeHeader(value.length, T.SHORT_LIST, 15, T.LIST8, T.LIST16, T.LIST32), ...value.map(referenceEncode)]);
  }
  if (value instanceof Map) return entries([...value]);
  if (typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') return referenceEncode((value as { toJSON(): unknown }).toJSON());
  if (typeof value === 'object') return entries(Object.entries(value as object).filter(([, v]) => v !== undefined));
  throw new Error(`cannot encode ${typeof value}`);
}
