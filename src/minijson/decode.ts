import { isUtf8 } from 'node:buffer';
import { DecodingError } from './errors.js';
import { DEFAULT_MAX_DEPTH, T } from './types.js';

// Local copies: reaching through the imported object costs a getter call per access under tsx.
const { BIGINT, BIN16, BIN32, BIN8, FALSE, FLOAT32, FLOAT64, INT16, INT32, INT8, LIST16, LIST32, LIST8, MAP16, MAP32, MAP8, NULL, OBJ16, OBJ32, OBJ8, SHORT_LIST, SHORT_MAP, SHORT_OBJ, STR16, STR32, STR8, TRUE, UINT16, UINT24, UINT32, UINT8 } = T;

export interface DecodeOptions {
  /** Containers nested deeper than this are a DecodingError (no stack overflow). Default 512. */
  maxDepth?: number;
}

/*
 * The decoder keeps its cursor in module state (it never calls out to user code, so it cannot
 * be re-entered) and reads bytes directly; a DataView is made only if a float turns up.
 */
let data: Buffer = Buffer.alloc(0);
let pos = 0;
let end = 0;
let maxDepth = DEFAULT_MAX_DEPTH;
let view: DataView | null = null;

const TWO32 = 0x1_0000_0000;

/** Decodes one MiniJSON value from the start of `bytes`. Bytes after it are ignored, as the reference does. */
export function decode(bytes: Uint8Array, options?: DecodeOptions): unknown {
  return decodePrefix(bytes, options).value;
}

/** Decodes one value and says how many bytes it took. */
export function decodePrefix(bytes: Uint8Array, options?: DecodeOptions): { value: unknown; length: number } {
  if (!(bytes instanceof Uint8Array)) throw new DecodingError('input is not a Uint8Array', 0);
  data = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  end = data.length;
  maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
  view = null;
  try {
    const value = readValue(0);
    return { value, length: pos };
  } finally {
    data = EMPTY; // do not keep the caller's buffer alive
    view = null;
  }
}

const EMPTY = Buffer.alloc(0);

function fail(what: string, at = pos): never {
  throw new DecodingError(what, at);
}

function need(n: number, what: string): void {
  if (n > end - pos) fail(`${what}: needs ${n} bytes, only ${end - pos} left`);
}

function readValue(depth: number): unknown {
  if (pos >= end) fail('unexpected end of input, expected a value');
  const t = data[pos++];
  if (t >= 0x80) return readString(t & 0x7f);
  if (t >= 0x40) {
    const n = t & 0x0f;
    switch (t & 0xf0) {
      case SHORT_LIST:
        return readList(n, depth);
      case SHORT_OBJ:
        return readObject(n, depth);
      case SHORT_MAP:
        return readMap(n, depth);
      default:
        fail(`unknown type byte 0x${t.toString(16)}`, pos - 1);
    }
  }
  switch (t) {
    case STR8:
      return readString(readCount(1, 'string length'));
    case STR16:
      return readString(readCount(2, 'string length'));
    case STR32:
      return readString(readCount(4, 'string length'));
    case INT8:
      need(1, 'int8');
      return (data[pos++] << 24) >> 24;
    case UINT8:
      need(1, 'uint8');
      return data[pos++];
    case INT16: {
      need(2, 'int16');
      const v = ((data[pos] << 24) | (data[pos + 1] << 16)) >> 16;
      pos += 2;
      return v;
    }
    case UINT16: {
      need(2, 'uint16');
      const v = (data[pos] << 8) | data[pos + 1];
      pos += 2;
      return v;
    }
    case UINT24: {
      need(3, 'uint24');
      const v = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2];
      pos += 3;
      return v;
    }
    case INT32: {
      need(4, 'int32');
      const v = (data[pos] << 24) | (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3];
      pos += 4;
      return v;
    }
    case UINT32: {
      need(4, 'uint32');
      const v = ((data[pos] << 24) | (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]) >>> 0;
      pos += 4;
      return v;
    }
    case BIGINT:
      return readBigInteger();
    case NULL:
      return null;
    case TRUE:
      return true;
    case FALSE:
      return false;
    case FLOAT32: {
      need(4, 'float32');
      view ??= new DataView(data.buffer, data.byteOffset, data.byteLength);
      const v = view.getFloat32(pos);
      pos += 4;
      return v;
    }
    case FLOAT64: {
      need(8, 'float64');
      view ??= new DataView(data.buffer, data.byteOffset, data.byteLength);
      const v = view.getFloat64(pos);
      pos += 8;
      return v;
    }
    case LIST8:
      return readList(readCount(1, 'list length'), depth);
    case LIST16:
      return readList(readCount(2, 'list length'), depth);
    case LIST32:
      return readList(readCount(4, 'list length'), depth);
    case OBJ8:
      return readObject(readCount(1, 'object size'), depth);
    case OBJ16:
      return readObject(readCount(2, 'object size'), depth);
    case OBJ32:
      return readObject(readCount(4, 'object size'), depth);
    case MAP8:
      return readMap(readCount(1, 'map size'), depth);
    case MAP16:
      return readMap(readCount(2, 'map size'), depth);
    case MAP32:
      return readMap(readCount(4, 'map size'), depth);
    case BIN8:
      return readBytes(readCount(1, 'binary length'));
    case BIN16:
      return readBytes(readCount(2, 'binary length'));
    case BIN32:
      return readBytes(readCount(4, 'binary length'));
    default:
      fail(`unknown type byte 0x${t.toString(16)}`, pos - 1);
  }
}

/** Reads an unsigned big-endian count of `size` bytes. */
function readCount(size: 1 | 2 | 4, what: string): number {
  need(size, what);
  let v: number;
  if (size === 1) v = data[pos];
  else if (size === 2) v = (data[pos] << 8) | data[pos + 1];
  else v = ((data[pos] << 24) | (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]) >>> 0;
  pos += size;
  return v;
}

function readString(len: number): string {
  need(len, 'string');
  const s = utf8(pos, len);
  pos += len;
  return s;
}

/** UTF-8 bytes at [at, at+len) to a string; invalid UTF-8 is a DecodingError, never U+FFFD. */
function utf8(at: number, len: number): string {
  if (len <= 16) {
    // Short strings (keys, paths, enum-like values) are mostly ASCII: build them in JS.
    let s = '';
    let i = 0;
    for (; i < len; i++) {
      const c = data[at + i];
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === len) return s;
  } else if (len <= 4096) {
    // Medium strings: an ASCII scan here is cheaper than full UTF-8 validation natively.
    let i = at;
    const stop = at + len;
    while (i < stop && data[i] < 0x80) i++;
    if (i === stop) return data.toString('latin1', at, stop);
  }
  if (!isUtf8(data.subarray(at, at + len))) fail('string is not valid UTF-8', at);
  return data.toString('utf8', at, at + len);
}

/*
 * Object keys repeat (every record has "path", "values", "when"...): a small cache of short
 * ASCII keys, indexed by a hash of their bytes, saves building the same string again.
 */
const KEY_CACHE_BITS = 12;
const keyCache: (string | undefined)[] = new Array(1 << KEY_CACHE_BITS).fill(undefined);

function cachedKey(at: number, len: number): string {
  let h = len;
  for (let i = 0; i < len; i++) h = (Math.imul(h, 31) + data[at + i]) | 0;
  const slot = (h ^ (h >>> KEY_CACHE_BITS)) & ((1 << KEY_CACHE_BITS) - 1);
  const hit = keyCache[slot];
  if (hit !== undefined && hit.length === len) {
    let i = 0;
    while (i < len && hit.charCodeAt(i) === data[at + i]) i++;
    if (i === len) return hit;
  }
  const key = utf8(at, len);
  // Only ASCII keys are cached: for them chars and bytes compare one to one.
  if (key.length === len) keyCache[slot] = key;
  return key;
}

function readBigInteger(): number | bigint {
  const n = readCount(1, 'integer length');
  need(n, 'integer');
  const at = pos;
  pos += n;
  if (n === 0) return 0;
  if (n <= 6) return signedFromBytes(at, n); // up to 48 bits: exact in a double
  if (n === 7) {
    const hi = ((data[at] << 24) >> 8) | (data[at + 1] << 8) | data[at + 2]; // signed 24-bit
    const lo = ((data[at + 3] << 24) | (data[at + 4] << 16) | (data[at + 5] << 8) | data[at + 6]) >>> 0;
    const v = hi * TWO32 + lo;
    if (Number.isSafeInteger(v)) return v;
  }
  let b = 0n;
  for (let i = 0; i < n; i++) b = (b << 8n) | BigInt(data[at + i]);
  if (data[at] >= 0x80) b -= 1n << BigInt(8 * n);
  return Number.isSafeInteger(Number(b)) && BigInt(Number(b)) === b ? Number(b) : b;
}

/** Two's complement integer of n <= 6 bytes, as a number (exact). */
function signedFromBytes(at: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + data[at + i];
  return data[at] >= 0x80 ? v - 256 ** n : v;
}

function readBytes(len: number): Uint8Array {
  need(len, 'binary data');
  const out = new Uint8Array(len);
  out.set(data.subarray(pos, pos + len));
  pos += len;
  return out;
}

function enter(depth: number): number {
  if (depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
  return depth + 1;
}

function readList(n: number, depth: number): unknown[] {
  // Every element takes at least one byte: refuse counts the input cannot hold before allocating.
  if (n > end - pos) fail(`list claims ${n} elements but only ${end - pos} bytes are left`);
  const d = enter(depth);
  const list = new Array(n);
  for (let i = 0; i < n; i++) list[i] = readValue(d);
  return list;
}

function readObject(n: number, depth: number): Record<string, unknown> {
  if (n * 2 > end - pos) fail(`object claims ${n} entries but only ${end - pos} bytes are left`);
  const d = enter(depth);
  const obj: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    need(1, 'key length');
    const len = data[pos++];
    need(len, 'key');
    const key = len <= 16 ? cachedKey(pos, len) : utf8(pos, len);
    pos += len;
    setProperty(obj, key, readValue(d));
  }
  return obj;
}

/** `__proto__` becomes an own property (as JSON.parse does), never the object's prototype. */
function setProperty(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  else obj[key] = value;
}

/** Any-key map: an object if every key is a string, else a Map. */
function readMap(n: number, depth: number): Record<string, unknown> | Map<unknown, unknown> {
  if (n * 2 > end - pos) fail(`map claims ${n} entries but only ${end - pos} bytes are left`);
  const d = enter(depth);
  const keys = new Array(n);
  const values = new Array(n);
  let allStrings = true;
  for (let i = 0; i < n; i++) {
    const k = readValue(d);
    keys[i] = k;
    values[i] = readValue(d);
    if (typeof k !== 'string') allStrings = false;
  }
  if (allStrings) {
    const obj: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) setProperty(obj, keys[i], values[i]);
    return obj;
  }
  const map = new Map<unknown, unknown>();
  for (let i = 0; i < n; i++) map.set(keys[i], values[i]);
  return map;
}
