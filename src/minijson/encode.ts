import { EncodingError } from './errors.js';
import { DEFAULT_MAX_DEPTH, T } from './types.js';

// Local copies: reaching through the imported object costs a getter call per access under tsx.
const { BIGINT, BIN16, BIN32, BIN8, FALSE, FLOAT32, FLOAT64, INT16, INT32, INT8, LIST16, LIST32, LIST8, MAP16, MAP32, MAP8, NULL, OBJ16, OBJ32, OBJ8, SHORT_LIST, SHORT_MAP, SHORT_OBJ, SHORT_STR, STR16, STR32, STR8, TRUE, UINT16, UINT24, UINT32, UINT8 } = T;

export interface EncodeOptions {
  /** Containers nested deeper than this are refused (a cycle is reported as such). Default 512. */
  maxDepth?: number;
}

/*
 * Encoding writes into a shared slab. Each result is a view of the bytes it wrote; the next
 * call writes after it, so earlier results stay valid (a slab is never written twice), and a
 * fresh slab is taken when the rest of the current one would not hold a result as large as the
 * recent ones. Slabs are sized to hold several such results, so a batch encoder allocates one
 * slab every few calls and almost never copies a half-written result into a bigger slab.
 *
 * Every scalar and every container header takes at most SLACK bytes, so one comparison with
 * `safeEnd` (= slab length - SLACK) per value is the only space check on the hot path; strings
 * and binary data, which may be longer, check their own length.
 */
const MIN_SLAB = 64 * 1024;
/** A slab is at most this large unless a single result needs more. */
const MAX_SLAB = 1024 * 1024;
/** Slab size in multiples of the largest recent result. */
const RESULTS_PER_SLAB = 8;
const SLACK = 16;

let buf: Buffer = Buffer.allocUnsafeSlow(MIN_SLAB);
let scratch: DataView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
let safeEnd = buf.length - SLACK;
let pos = 0;
/** Where the result being written begins (positions saved during an encode are kept relative to it: growing moves it). */
let start = 0;
/** Largest recent result (decays by half per slab), to size the next slab and to decide when to leave one. */
let recentMax = 0;
let maxDepth = DEFAULT_MAX_DEPTH;
let busy = false;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO32 = 0x1_0000_0000;
const TWO_MINUS_32 = 1 / TWO32;

function useSlab(size: number): void {
  buf = Buffer.allocUnsafeSlow(size);
  scratch = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  safeEnd = size - SLACK;
}

/** The current result needs `needed` more bytes than its slab has: move it to a larger one. */
function grow(needed: number): void {
  const used = pos - start;
  const old = buf;
  const oldStart = start;
  useSlab(Math.max(MIN_SLAB, (used + needed + SLACK) * 2));
  old.copy(buf, 0, oldStart, oldStart + used);
  start = 0;
  pos = used;
}

/** Room for `n` bytes (beyond the SLACK every value may use). */
function ensure(n: number): void {
  if (pos + n > safeEnd) grow(n + SLACK);
}

/**
 * Encodes `value`, leaving `reserve` zeroed bytes in front of it (used by the frame writer to
 * put its header there without copying the payload). Returns the bytes, header space included.
 */
export function encodeWithReserve(value: unknown, reserve: number, options?: EncodeOptions): Buffer {
  if (busy) throw new EncodingError('encode() called again while encoding (from a toJSON method?)');
  busy = true;
  maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
  if (safeEnd - pos < reserve + recentMax) {
    // Leaving the current slab: size the next one for several results like the recent ones,
    // then let the estimate decay, so that one huge result does not keep slabs huge.
    useSlab(Math.min(MAX_SLAB, Math.max(MIN_SLAB, RESULTS_PER_SLAB * (reserve + recentMax + SLACK))));
    recentMax >>>= 1;
    pos = 0;
  }
  start = pos;
  try {
    if (reserve > 0) {
      ensure(reserve);
      buf.fill(0, pos, pos + reserve);
      pos += reserve;
    }
    writeValue(value, 0);
    const out = buf.subarray(start, pos);
    if (out.length > recentMax) recentMax = out.length;
    // Keep the next result 8-byte aligned in the slab.
    pos = Math.min((pos + 7) & ~7, buf.length);
    return out;
  } catch (err) {
    pos = start;
    if (err instanceof DepthExceeded) throw describeDepthProblem(value);
    throw err;
  } finally {
    busy = false;
  }
}

/** Encodes a value as MiniJSON, choosing the smallest representation as the reference does. */
export function encode(value: unknown, options?: EncodeOptions): Uint8Array {
  return encodeWithReserve(value, 0, options);
}

/** Thrown internally when maxDepth is hit; turned into a cycle or depth error with a path. */
class DepthExceeded extends Error {}

/*
 * Dispatch: numbers first (pathpoint data is mostly numbers), then strings, then containers.
 * Containers call writeValue only for what is not a number, so a [timestamp, value] pair costs
 * one list header and two writeNumber calls.
 */
function writeValue(value: unknown, depth: number): void {
  if (typeof value === 'number') writeNumber(value);
  else if (typeof value === 'string') writeString(value);
  else if (typeof value === 'object') {
    if (value === null) writeByte(NULL);
    else writeContainer(value, depth);
  } else if (typeof value === 'boolean') writeByte(value ? TRUE : FALSE);
  else if (typeof value === 'bigint') writeBigInt(value);
  else throw new EncodingError(`cannot encode a value of type ${typeof value}`);
}

function writeByte(b: number): void {
  if (pos > safeEnd) grow(SLACK);
  buf[pos++] = b;
}

function writeContainer(value: object, depth: number): void {
  if (depth >= maxDepth) throw new DepthExceeded();
  if (Array.isArray(value)) writeList(value, depth + 1);
  else if (value instanceof Uint8Array) writeBytes(value);
  else if (value instanceof Map) writeMap(value, depth + 1);
  else if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    writeValue((value as { toJSON(): unknown }).toJSON(), depth);
  } else if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    throw new EncodingError(`cannot encode ${value.constructor.name}; pass a Uint8Array or Buffer`);
  } else writeObject(value as Record<string, unknown>, depth + 1);
}

// ---- numbers ------------------------------------------------------------------------------

function writeNumber(x: number): void {
  if (pos > safeEnd) grow(SLACK);
  writeNumberInRoom(x);
}

/** A number, its room (SLACK bytes) already made. */
function writeNumberInRoom(x: number): void {
  if (Number.isInteger(x)) {
    if (x >= -0x80000000 && x < 0x80000000) {
      // -0 is not an integer on the wire: it stays a float, as the reference writes it.
      if (x !== 0 || 1 / x > 0) return writeInt32(x);
    } else if (x >= 0 && x < TWO32) {
      scratch.setUint8(pos, UINT32);
      scratch.setUint32(pos + 1, x);
      pos += 5;
      return;
    } else if (x <= MAX_SAFE && x >= -MAX_SAFE) return writeWideInteger(x);
  }
  // A float: single when it holds the value exactly (NaN and ±Infinity included), else double: lossless.
  const v = scratch;
  const p = pos;
  if (Math.fround(x) === x || x !== x) {
    v.setUint8(p, FLOAT32);
    v.setFloat32(p + 1, x);
    pos = p + 5;
  } else {
    v.setUint8(p, FLOAT64);
    v.setFloat64(p + 1, x);
    pos = p + 9;
  }
}

/**
 * The smallest integer type for an int32, in the reference's order of preference. Room is
 * checked. The type byte and the value go out as one big-endian store where they fit a word.
 */
function writeInt32(x: number): void {
  const v = scratch;
  const p = pos;
  if (x >= -0x80 && x < 0x80) {
    v.setUint16(p, (INT8 << 8) | (x & 0xff));
    pos = p + 2;
  } else if (x >= 0 && x < 0x100) {
    v.setUint16(p, (UINT8 << 8) | x);
    pos = p + 2;
  } else if (x >= -0x8000 && x < 0x10000) {
    v.setUint8(p, x < 0x8000 ? INT16 : UINT16);
    v.setUint16(p + 1, x & 0xffff);
    pos = p + 3;
  } else if (x >= 0 && x < 0x1000000) {
    v.setUint32(p, (UINT24 << 24) | x);
    pos = p + 4;
  } else {
    v.setUint8(p, INT32);
    v.setInt32(p + 1, x);
    pos = p + 5;
  }
}

/**
 * A safe integer beyond 32 bits as type 24 (two's complement, fewest bytes), without BigInt:
 * millisecond timestamps (~1.7e12, 6 bytes) take this path, so it is hot for pathpoint data.
 * Room is checked.
 */
function writeWideInteger(x: number): void {
  const lo = x >>> 0; // x mod 2^32: the low word, also for negative x
  const hi = (x - lo) * TWO_MINUS_32; // exact (a power of two): |hi| < 2^21
  const v = scratch;
  const p = pos;
  // Bytes needed so that -2^(8n-1) <= x < 2^(8n-1): 6 for ms timestamps; 5 to 7 for |x| in [2^31, 2^53).
  // Type, length and the high bytes go out as one big-endian word where they fit.
  if (hi >= -0x8000 && hi < 0x8000) {
    if (hi >= -0x80 && hi < 0x80) {
      v.setUint16(p, (BIGINT << 8) | 5);
      v.setInt8(p + 2, hi);
      v.setUint32(p + 3, lo);
      pos = p + 7;
    } else {
      v.setUint32(p, (BIGINT << 24) | (6 << 16) | (hi & 0xffff));
      v.setUint32(p + 4, lo);
      pos = p + 8;
    }
  } else {
    v.setUint32(p, (BIGINT << 24) | (7 << 16) | ((hi >> 8) & 0xffff));
    v.setUint8(p + 4, hi & 0xff);
    v.setUint32(p + 5, lo);
    pos = p + 9;
  }
}

function writeBigInt(v: bigint): void {
  if (v >= -0x80000000n && v < 0x1_0000_0000n) {
    writeNumber(Number(v));
    return;
  }
  let n = 1;
  while (v >= 1n << BigInt(8 * n - 1) || v < -(1n << BigInt(8 * n - 1))) n++;
  if (n > 255) throw new EncodingError('integer needs more than 255 bytes');
  ensure(2 + n);
  buf[pos++] = BIGINT;
  buf[pos++] = n;
  let u = v < 0n ? (1n << BigInt(8 * n)) + v : v;
  for (let i = n - 1; i >= 0; i--) {
    buf[pos + i] = Number(u & 0xffn);
    u >>= 8n;
  }
  pos += n;
}

// ---- strings and binary -------------------------------------------------------------------

/** Strings up to this many UTF-16 units are written in JS; longer ones by Buffer#write. */
const JS_STRING_MAX = 64;
/** Beyond this many units, the exact UTF-8 length is measured first rather than reserving 3 bytes per unit. */
const MEASURED_STRING_MIN = 0x10000;

function writeString(s: string): void {
  const n = s.length;
  if (n <= 42) {
    // At most 3 bytes per UTF-16 unit, so the result surely fits the 1-byte short form.
    ensure(1 + n * 3);
    const h = pos++;
    const len = writeUtf8(s);
    buf[h] = SHORT_STR | len;
  } else if (n < MEASURED_STRING_MIN) {
    // Guess the header from the length in units (exact for ASCII); UTF-8 is never shorter, so
    // a wrong guess is too small: move the bytes up to make room for the right one.
    const guess = headerSize(n, 127);
    ensure(5 + n * 3);
    const h = pos;
    pos += guess;
    const len = n <= JS_STRING_MAX ? writeUtf8(s) : writeUtf8Native(s);
    const actual = headerSize(len, 127);
    if (actual !== guess) buf.copyWithin(h + actual, h + guess, pos);
    pos = h;
    writeSizeHeader(len, SHORT_STR, 127, STR8, STR16, STR32);
    pos += len;
  } else {
    checkWellFormed(s);
    const len = Buffer.byteLength(s, 'utf8');
    ensure(5 + len);
    writeSizeHeader(len, SHORT_STR, 127, STR8, STR16, STR32);
    pos += buf.write(s, pos, len, 'utf8');
  }
}

function checkWellFormed(s: string): void {
  // A lone surrogate has no UTF-8 form; writing U+FFFD instead would silently change the data.
  if (!s.isWellFormed()) throw new EncodingError('string contains a lone UTF-16 surrogate');
}

/**
 * Writes a string's UTF-8 at pos (room for 3 bytes per unit reserved by the caller) and returns
 * its byte length. ASCII is built in JS: for a few dozen characters that beats a native call.
 */
function writeUtf8(s: string): number {
  const n = s.length;
  const b = buf;
  const p = pos;
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) break;
    b[p + i] = c;
  }
  if (i === n) {
    pos = p + n;
    return n;
  }
  return writeUtf8Native(s);
}

function writeUtf8Native(s: string): number {
  checkWellFormed(s);
  const len = buf.write(s, pos, 'utf8');
  pos += len;
  return len;
}

function writeBytes(bytes: Uint8Array): void {
  const len = bytes.length;
  ensure(5 + len);
  writeSizeHeader(len, 0, -1, BIN8, BIN16, BIN32); // binary has no short form
  buf.set(bytes, pos);
  pos += len;
}

// ---- containers ---------------------------------------------------------------------------

/** A length or count: the short form up to shortMax (-1: the type has none), else 8/16/32-bit. Room is checked. */
function writeSizeHeader(n: number, short: number, shortMax: number, t8: number, t16: number, t32: number): void {
  const v = scratch;
  const p = pos;
  if (n <= shortMax) {
    v.setUint8(p, short | n);
    pos = p + 1;
  } else if (n <= 0xff) {
    v.setUint16(p, (t8 << 8) | n);
    pos = p + 2;
  } else if (n <= 0xffff) {
    v.setUint8(p, t16);
    v.setUint16(p + 1, n);
    pos = p + 3;
  } else {
    v.setUint8(p, t32);
    v.setUint32(p + 1, n);
    pos = p + 5;
  }
}

/** Bytes taken by a size header for `n` with the given short-form maximum. */
function headerSize(n: number, shortMax: number): number {
  return n <= shortMax ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

function writeList(list: unknown[], depth: number): void {
  const n = list.length;
  if (pos > safeEnd) grow(SLACK);
  writeSizeHeader(n, SHORT_LIST, 15, LIST8, LIST16, LIST32);
  let i = 0;
  try {
    for (; i < n; i++) {
      const item = list[i];
      if (typeof item === 'number') writeNumber(item);
      else if (Array.isArray(item)) {
        // A list of lists (the series of [timestamp, value] pairs) skips the general dispatch.
        if (depth >= maxDepth) throw new DepthExceeded();
        writeInnerList(item, depth + 1);
      } else if (item === undefined) throw new EncodingError('cannot encode undefined in a list');
      else writeValue(item, depth);
    }
  } catch (err) {
    throw withPathSegment(err, `[${i}]`);
  }
}

/**
 * writeList for a list inside a list (a [timestamp, value] pair): not recursive, so V8 can
 * inline it into its caller, and room for a short list's numbers is made once, not per number.
 */
function writeInnerList(list: unknown[], depth: number): void {
  const n = list.length;
  if (n > 15) return writeList(list, depth);
  ensure((n + 1) * SLACK);
  buf[pos++] = SHORT_LIST | n;
  let i = 0;
  try {
    for (; i < n; i++) {
      const item = list[i];
      if (typeof item === 'number') writeNumberInRoom(item);
      else if (item === undefined) throw new EncodingError('cannot encode undefined in a list');
      else {
        writeValue(item, depth);
        ensure((n - i) * SLACK);
      }
    }
  } catch (err) {
    throw withPathSegment(err, `[${i}]`);
  }
}

const hasOwn = Object.prototype.hasOwnProperty;

/*
 * Objects are walked with for-in rather than Object.keys: V8 then reads each value by its
 * field index from the enum cache, which stays fast however many object shapes the encoder
 * has seen (a keyed load by name turns megamorphic). The count is known only at the end, so
 * a 1-byte header is written first and widened in place for 16 entries or more.
 */
function writeObject(obj: Record<string, unknown>, depth: number): void {
  if (pos > safeEnd) grow(SLACK);
  const headerOffset = pos - start;
  pos++;
  let count = 0;
  let key: string | undefined;
  try {
    for (key in obj) {
      if (!hasOwn.call(obj, key)) continue; // inherited: Object.keys would not list it
      const item = obj[key];
      // Like JSON.stringify, a property whose value is undefined is left out.
      if (item === undefined) continue;
      if (!writeKey(key)) {
        pos = start + headerOffset;
        writeObjectAsMap(obj, depth);
        return;
      }
      if (typeof item === 'number') writeNumber(item);
      else writeValue(item, depth);
      count++;
    }
  } catch (err) {
    throw withPathSegment(err, propertySegment(key));
  }
  const at = start + headerOffset;
  if (count < 16) buf[at] = SHORT_OBJ | count;
  else {
    // Rare: make room for the wider header by moving the entries up.
    const size = headerSize(count, 15);
    ensure(size);
    const from = start + headerOffset;
    buf.copyWithin(from + size, from + 1, pos);
    const end = pos + size - 1;
    pos = from;
    writeSizeHeader(count, SHORT_OBJ, 15, OBJ8, OBJ16, OBJ32);
    pos = end;
  }
}

/** Writes a string-key object's key (1-byte length + UTF-8); false when it is over 255 bytes. */
function writeKey(key: string): boolean {
  const n = key.length;
  if (n > 255) return false;
  ensure(1 + n * 3);
  const h = pos++;
  const len = writeUtf8(key);
  if (len > 255) return false;
  buf[h] = len;
  return true;
}

/** An object with a key longer than 255 bytes goes out as an any-key map of string keys. */
function writeObjectAsMap(obj: Record<string, unknown>, depth: number): void {
  const entries: [string, unknown][] = [];
  for (const key of Object.keys(obj)) if (obj[key] !== undefined) entries.push([key, obj[key]]);
  writeEntries(entries, depth);
}

function writeMap(map: Map<unknown, unknown>, depth: number): void {
  let stringKeys = true;
  for (const key of map.keys()) {
    if (typeof key !== 'string' || key.length > 255 || Buffer.byteLength(key) > 255) {
      stringKeys = false;
      break;
    }
  }
  if (stringKeys) {
    // Same bytes as the reference writes for a dict with short string keys.
    ensure(5);
    writeSizeHeader(map.size, SHORT_OBJ, 15, OBJ8, OBJ16, OBJ32);
    let key: unknown;
    try {
      for (const [k, v] of map) {
        key = k;
        writeKey(k as string);
        if (v === undefined) throw new EncodingError('cannot encode undefined as a Map value');
        writeValue(v, depth);
      }
    } catch (err) {
      throw withPathSegment(err, mapSegment(key));
    }
    return;
  }
  writeEntries(map, depth);
}

function writeEntries(entries: Iterable<[unknown, unknown]> & ({ size: number } | { length: number }), depth: number): void {
  const count = 'size' in entries ? entries.size : entries.length;
  ensure(5);
  writeSizeHeader(count, SHORT_MAP, 15, MAP8, MAP16, MAP32);
  let key: unknown;
  try {
    for (const [k, v] of entries) {
      key = k;
      if (k === undefined || v === undefined) throw new EncodingError('cannot encode undefined in a map entry');
      writeValue(k, depth);
      writeValue(v, depth);
    }
  } catch (err) {
    throw withPathSegment(err, mapSegment(key));
  }
}

// ---- error paths --------------------------------------------------------------------------

function withPathSegment(err: unknown, segment: string): unknown {
  return err instanceof EncodingError ? err.under(segment) : err;
}

function propertySegment(key: string | undefined): string {
  return key !== undefined && /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function mapSegment(key: unknown): string {
  return typeof key === 'string' ? propertySegment(key) : `[${String(key)}]`;
}

/** maxDepth was hit: find out whether it is a cycle (and where) or just deep nesting. */
function describeDepthProblem(root: unknown): EncodingError {
  const ancestors: { value: object; path: string }[] = [];
  const visit = (value: unknown, path: string): EncodingError | undefined => {
    if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return undefined;
    const seen = ancestors.find((a) => a.value === value);
    if (seen) return new EncodingError(`cycle: this value is its own ancestor ${seen.path}`, path);
    if (ancestors.length >= maxDepth) return new EncodingError(`nesting deeper than ${maxDepth}`, path);
    ancestors.push({ value, path });
    let found: EncodingError | undefined;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length && !found; i++) found = visit(value[i], `${path}[${i}]`);
    } else if (value instanceof Map) {
      for (const [k, v] of value) if (!found) found = visit(k, `${path}${mapSegment(k)}`) ?? visit(v, `${path}${mapSegment(k)}`);
    } else {
      for (const k of Object.keys(value)) if (!found) found = visit((value as Record<string, unknown>)[k], path + propertySegment(k));
    }
    ancestors.pop();
    return found;
  };
  return visit(root, '$') ?? new EncodingError(`nesting deeper than ${maxDepth}`);
}
