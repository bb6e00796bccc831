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
 * be re-entered) and reads bytes directly, or whole words through a DataView over the input.
 * Every read is bounded by `end`; every count is checked against the bytes left before
 * anything is allocated for it.
 */
/**
 * Node's own UTF-8 slicer, what toString('utf8', start, end) calls after checking its arguments
 * (undocumented, present in every Node release; msgpackr relies on it too). Typed here, not by
 * augmenting Buffer, so that the shipped declarations change nothing in a consumer's types.
 */
type SlicingBuffer = Buffer & { utf8Slice(start: number, end: number): string };

let data = Buffer.alloc(0) as SlicingBuffer;
let view = new DataView(data.buffer, data.byteOffset, 0);
/** Where `data` starts in `view` (the view spans the whole ArrayBuffer under `data`). */
let base = 0;
let pos = 0;
let end = 0;
let maxDepth = DEFAULT_MAX_DEPTH;

const TWO32 = 0x1_0000_0000;

/** Decodes one MiniJSON value from the start of `bytes`. Bytes after it are ignored, as the reference does. */
export function decode(bytes: Uint8Array, options?: DecodeOptions): unknown {
  begin(bytes, options);
  try {
    return readValue(0);
  } finally {
    release();
  }
}

/** Decodes one value and says how many bytes it took. */
export function decodePrefix(bytes: Uint8Array, options?: DecodeOptions): { value: unknown; length: number } {
  begin(bytes, options);
  try {
    const value = readValue(0);
    return { value, length: pos };
  } finally {
    release();
  }
}

function begin(bytes: Uint8Array, options: DecodeOptions | undefined): void {
  if (!(bytes instanceof Uint8Array)) throw new DecodingError('input is not a Uint8Array', 0);
  data = (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as SlicingBuffer;
  // Many inputs are views of one larger buffer (frames of a received chunk, pool slices): one view per buffer.
  if (view.buffer !== data.buffer) view = new DataView(data.buffer);
  base = data.byteOffset;
  pos = 0;
  end = data.length;
  maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
}

const EMPTY = Buffer.alloc(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer, 0, 0);

function release(): void {
  // Do not keep the caller's buffer alive.
  data = EMPTY as SlicingBuffer;
  view = EMPTY_VIEW;
}

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
    if (t < SHORT_OBJ) return readList(n, depth);
    if (t < SHORT_MAP) return readObject(n, depth);
    if (t < 0x70) return readMap(n, depth);
    fail(`unknown type byte 0x${t.toString(16)}`, pos - 1);
  }
  switch (t) {
    case INT8:
      need(1, 'int8');
      return view.getInt8(base + pos++);
    case UINT8:
      need(1, 'uint8');
      return data[pos++];
    case INT16: {
      need(2, 'int16');
      const v = view.getInt16(base + pos);
      pos += 2;
      return v;
    }
    case UINT16: {
      need(2, 'uint16');
      const v = view.getUint16(base + pos);
      pos += 2;
      return v;
    }
    case UINT24: {
      need(3, 'uint24');
      const v = (data[pos] << 16) | view.getUint16(base + pos + 1);
      pos += 3;
      return v;
    }
    case INT32: {
      need(4, 'int32');
      const v = view.getInt32(base + pos);
      pos += 4;
      return v;
    }
    case UINT32: {
      need(4, 'uint32');
      const v = view.getUint32(base + pos);
      pos += 4;
      return v;
    }
    case BIGINT: {
      if (end - pos >= 7 && data[pos] === 6) {
        const v = int48At(pos + 1);
        pos += 7;
        return v;
      }
      return readBigInteger();
    }
    case FLOAT32: {
      need(4, 'float32');
      const v = view.getFloat32(base + pos);
      pos += 4;
      return v;
    }
    case FLOAT64: {
      need(8, 'float64');
      const v = view.getFloat64(base + pos);
      pos += 8;
      return v;
    }
    case NULL:
      return null;
    case TRUE:
      return true;
    case FALSE:
      return false;
    case STR8:
      return readString(readCount(1, 'string length'));
    case STR16:
      return readString(readCount(2, 'string length'));
    case STR32:
      return readString(readCount(4, 'string length'));
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
  const v = size === 1 ? data[pos] : size === 2 ? view.getUint16(base + pos) : view.getUint32(base + pos);
  pos += size;
  return v;
}

// ---- strings ------------------------------------------------------------------------------

function readString(len: number): string {
  need(len, 'string');
  const at = pos;
  pos += len;
  // Short strings repeat (paths, keys, service names, error codes): look them up first.
  return len <= SHORT_MAX ? shortString(at, len) : utf8(at, len);
}

/** UTF-8 bytes at [at, at+len) to a string; invalid UTF-8 is a DecodingError, never U+FFFD. */
function utf8(at: number, len: number): string {
  const s = data.utf8Slice(at, at + len);
  // Node's decoder turns every invalid sequence into U+FFFD; a string without one (found at
  // once in an ASCII or latin1 result) was valid. With one, it may still be a genuine U+FFFD.
  if (s.indexOf('\ufffd') !== -1 && !isUtf8(data.subarray(at, at + len))) fail('string is not valid UTF-8', at);
  return s;
}

/*
 * Short strings (object keys above all, but also repeated values) go through a small cache of
 * ASCII strings, indexed by a hash of their first and last four bytes. Each slot keeps the
 * string and its bytes as up to four big-endian words, so a hit is confirmed by comparing
 * words, and builds no string. A miss builds the string and takes the slot. The cache holds
 * no reference to the input.
 */
const SHORT_MAX = 16;
const CACHE_BITS = 12;
const cacheStrings: string[] = new Array<string>(1 << CACHE_BITS).fill('');
/** Per slot: bytes [0,4), [4,8), [8,12) and the last four (overlapping), or the 1-3 bytes and length in word 0. */
const cacheWords = new Int32Array(4 << CACHE_BITS);

function shortString(at: number, len: number): string {
  const a = base + at;
  let w0: number;
  let wl: number;
  if (len >= 4) {
    w0 = view.getInt32(a);
    wl = view.getInt32(a + len - 4);
  } else if (len > 0) {
    w0 = wl = (len << 24) | (data[at] << 16) | (len > 1 ? data[at + 1] << 8 : 0) | (len > 2 ? data[at + 2] : 0);
  } else return '';
  const slot = (Math.imul(w0, 0x9e3779b1) ^ Math.imul(wl + len, 0x85ebca77)) >>> (32 - CACHE_BITS);
  const k = slot << 2;
  const hit = cacheStrings[slot];
  if (
    hit.length === len &&
    cacheWords[k] === w0 &&
    cacheWords[k + 3] === wl &&
    (len <= 8 || (cacheWords[k + 1] === view.getInt32(a + 4) && (len <= 12 || cacheWords[k + 2] === view.getInt32(a + 8))))
  ) {
    return hit;
  }
  const s = utf8(at, len);
  // Only ASCII strings are cached: for them, equal bytes mean an equal string.
  if (s.length === len) {
    cacheStrings[slot] = s;
    cacheWords[k] = w0;
    cacheWords[k + 1] = len > 8 ? view.getInt32(a + 4) : 0;
    cacheWords[k + 2] = len > 12 ? view.getInt32(a + 8) : 0;
    cacheWords[k + 3] = wl;
  }
  return s;
}

// ---- numbers and binary -------------------------------------------------------------------

function readBigInteger(): number | bigint {
  const n = readCount(1, 'integer length');
  need(n, 'integer');
  const at = base + pos;
  pos += n;
  // Safe integers of 5 to 7 bytes (ms timestamps take 6, µs timestamps 7) as high and low words.
  if (n === 6) return view.getInt16(at) * TWO32 + view.getUint32(at + 2);
  if (n === 5) return view.getInt8(at) * TWO32 + view.getUint32(at + 1);
  if (n === 7) {
    const v = ((view.getInt8(at) << 16) | view.getUint16(at + 1)) * TWO32 + view.getUint32(at + 3);
    if (Number.isSafeInteger(v)) return v;
  }
  return wideInteger(at - base, n);
}

/** Any other length (the reference writes ≥ 5, but fewer bytes are valid): exact, as a number when safe. */
function wideInteger(at: number, n: number): number | bigint {
  if (n === 0) return 0;
  if (n <= 6) {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + data[at + i];
    return data[at] >= 0x80 ? v - 256 ** n : v;
  }
  let b = 0n;
  for (let i = 0; i < n; i++) b = (b << 8n) | BigInt(data[at + i]);
  if (data[at] >= 0x80) b -= 1n << BigInt(8 * n);
  return Number.isSafeInteger(Number(b)) && BigInt(Number(b)) === b ? Number(b) : b;
}

function readBytes(len: number): Uint8Array {
  need(len, 'binary data');
  const out = new Uint8Array(len);
  out.set(data.subarray(pos, pos + len));
  pos += len;
  return out;
}

// ---- containers ---------------------------------------------------------------------------

function enter(depth: number): number {
  if (depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
  return depth + 1;
}

/** A 6-byte integer (a millisecond timestamp) at `at`: a signed 16-bit high word and a 32-bit low word. */
function int48At(at: number): number {
  return view.getInt16(base + at) * TWO32 + view.getUint32(base + at + 2);
}

/**
 * readValue, with the commonest types of pathpoint values (doubles, millisecond timestamps)
 * tried first: not recursive, so V8 inlines it into readList, saving a call per value.
 */
function readElement(depth: number): unknown {
  if (end - pos >= 9) {
    const t = data[pos];
    if (t === FLOAT64) {
      const v = view.getFloat64(base + pos + 1);
      pos += 9;
      return v;
    }
    if (t === BIGINT && data[pos + 1] === 6) {
      const v = int48At(pos + 2);
      pos += 8;
      return v;
    }
    if (t === UINT16 || t === INT16) {
      const v = t === UINT16 ? view.getUint16(base + pos + 1) : view.getInt16(base + pos + 1);
      pos += 3;
      return v;
    }
  }
  return readValue(depth);
}

function readList(n: number, depth: number): unknown[] {
  // Every element takes at least one byte: refuse counts the input cannot hold before allocating.
  if (n > end - pos) fail(`list claims ${n} elements but only ${end - pos} bytes are left`);
  const d = enter(depth);
  if (n === 2) {
    // [timestamp, value]: a literal makes a packed array without a hole check per element.
    const first = readElement(d);
    return [first, readElement(d)];
  }
  const list = new Array(n);
  for (let i = 0; i < n; i++) list[i] = readElement(d);
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
    const at = pos;
    pos += len;
    const key = len <= SHORT_MAX ? shortString(at, len) : utf8(at, len);
    const value = readValue(d);
    // `__proto__` becomes an own property (as JSON.parse does), never the object's prototype.
    if (key === '__proto__') defineOwn(obj, key, value);
    else obj[key] = value;
  }
  return obj;
}

function defineOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
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
    for (let i = 0; i < n; i++) {
      if (keys[i] === '__proto__') defineOwn(obj, keys[i], values[i]);
      else obj[keys[i]] = values[i];
    }
    return obj;
  }
  const map = new Map<unknown, unknown>();
  for (let i = 0; i < n; i++) map.set(keys[i], values[i]);
  return map;
}
