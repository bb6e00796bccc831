import { EncodingError } from './errors.js';
import { DEFAULT_MAX_DEPTH, T } from './types.js';

// Local copies: reaching through the imported object costs a getter call per access under tsx.
const { BIGINT, BIN16, BIN32, BIN8, FALSE, FLOAT32, FLOAT64, INT16, INT32, INT8, LIST16, LIST32, LIST8, MAP16, MAP32, MAP8, NULL, OBJ16, OBJ32, OBJ8, SHORT_LIST, SHORT_MAP, SHORT_OBJ, SHORT_STR, STR16, STR32, STR8, TRUE, UINT16, UINT24, UINT32, UINT8 } = T;

export interface EncodeOptions {
  /** Containers nested deeper than this are refused (a cycle is reported as such). Default 512. */
  maxDepth?: number;
}

/*
 * Encoding writes into one shared, growing buffer. Each result is a view of the bytes it wrote;
 * the next call writes after it, so earlier results stay valid, and a fresh chunk is taken when
 * the current one runs low. This avoids both a copy per call and an allocation per value.
 */
const MIN_CHUNK = 64 * 1024;
let buf: Buffer = Buffer.allocUnsafeSlow(MIN_CHUNK);
let pos = 0;
let start = 0;
let maxDepth = DEFAULT_MAX_DEPTH;
let busy = false;
let scratch: DataView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO32 = 0x1_0000_0000;

function grow(needed: number): void {
  const used = pos - start;
  const size = Math.max(MIN_CHUNK, (used + needed) * 2);
  const next = Buffer.allocUnsafeSlow(size);
  buf.copy(next, 0, start, pos);
  buf = next;
  scratch = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  start = 0;
  pos = used;
}

function ensure(n: number): void {
  if (pos + n > buf.length) grow(n);
}

/**
 * Encodes `value`, leaving `reserve` zeroed bytes in front of it (used by the frame writer to
 * put its header there without copying the payload). Returns the bytes, header space included.
 */
export function encodeWithReserve(value: unknown, reserve: number, options?: EncodeOptions): Buffer {
  if (busy) throw new EncodingError('encode() called again while encoding (from a toJSON method?)');
  busy = true;
  maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
  // Start on a fresh chunk when the current one is nearly used, so views stay cheap.
  if (buf.length - pos < 256 + reserve) {
    buf = Buffer.allocUnsafeSlow(MIN_CHUNK);
    scratch = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    pos = 0;
  }
  start = pos;
  try {
    ensure(reserve);
    buf.fill(0, pos, pos + reserve);
    pos += reserve;
    writeValue(value, 0);
    const out = buf.subarray(start, pos);
    // Keep the next result 8-byte aligned in the chunk.
    pos = (pos + 7) & ~7;
    if (pos > buf.length) pos = buf.length;
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

function writeValue(value: unknown, depth: number): void {
  switch (typeof value) {
    case 'string':
      writeString(value);
      return;
    case 'number':
      writeNumber(value);
      return;
    case 'boolean':
      ensure(1);
      buf[pos++] = value ? TRUE : FALSE;
      return;
    case 'bigint':
      writeBigInt(value);
      return;
    case 'object':
      if (value === null) {
        ensure(1);
        buf[pos++] = NULL;
        return;
      }
      if (depth >= maxDepth) throw new DepthExceeded();
      if (Array.isArray(value)) writeList(value, depth + 1);
      else if (value instanceof Uint8Array) writeBytes(value);
      else if (value instanceof Map) writeMap(value, depth + 1);
      else if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
        writeValue((value as { toJSON(): unknown }).toJSON(), depth);
      } else if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
        throw new EncodingError(`cannot encode ${value.constructor.name}; pass a Uint8Array or Buffer`);
      } else writeObject(value as Record<string, unknown>, depth + 1);
      return;
    default:
      throw new EncodingError(`cannot encode a value of type ${typeof value}`);
  }
}

// ---- scalars ------------------------------------------------------------------------------

function writeString(s: string): void {
  const n = s.length;
  if (n <= 42) {
    // At most 3 bytes per UTF-16 unit, so the result surely fits the 1-byte short form.
    ensure(1 + n * 3);
    const h = pos++;
    buf[h] = SHORT_STR | writeUtf8Short(s);
    return;
  }
  if (n <= 1024) {
    // Optimistic ASCII (log messages, names): then bytes == chars and the header is known.
    const hs = n <= 127 ? 1 : n <= 0xff ? 2 : 3;
    ensure(hs + n);
    const h = pos;
    pos += hs;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[pos++] = c;
    }
    if (i === n) {
      if (hs === 1) buf[h] = SHORT_STR | n;
      else if (hs === 2) {
        buf[h] = STR8;
        buf[h + 1] = n;
      } else {
        buf[h] = STR16;
        buf[h + 1] = n >>> 8;
        buf[h + 2] = n & 0xff;
      }
      return;
    }
    pos = h;
  }
  checkWellFormed(s);
  const len = Buffer.byteLength(s, 'utf8');
  ensure(5 + len);
  writeSizeHeader(len, SHORT_STR, 127, STR8, STR16, STR32);
  pos += buf.write(s, pos, len, 'utf8');
}

/**
 * Writes a short string's UTF-8 at pos and returns its byte length. The caller has reserved
 * 3 bytes per character beforehand (growing here would move the header it is about to patch).
 * Builds ASCII in JS: for a few characters that beats a native call.
 */
function writeUtf8Short(s: string): number {
  const n = s.length;
  const start = pos;
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) break;
    buf[pos++] = c;
  }
  if (i < n) {
    checkWellFormed(s);
    pos = start;
    pos += buf.write(s, pos, 'utf8');
  }
  return pos - start;
}

function checkWellFormed(s: string): void {
  // A lone surrogate has no UTF-8 form; writing U+FFFD instead would silently change the data.
  if (!s.isWellFormed()) throw new EncodingError('string contains a lone UTF-16 surrogate');
}

function writeNumber(x: number): void {
  if (Number.isInteger(x) && x <= MAX_SAFE && x >= -MAX_SAFE && !Object.is(x, -0)) {
    writeInteger(x);
    return;
  }
  ensure(9);
  // Single when it holds the value exactly (NaN and ±Infinity included), else double: lossless.
  if (Math.fround(x) === x || x !== x) {
    buf[pos++] = FLOAT32;
    scratch.setFloat32(pos, x);
    pos += 4;
  } else {
    buf[pos++] = FLOAT64;
    scratch.setFloat64(pos, x);
    pos += 8;
  }
}

/** Smallest integer type for a safe integer, in the reference's order of preference. */
function writeInteger(x: number): void {
  ensure(9);
  if (x >= 0) {
    if (x < 0x80) {
      buf[pos++] = INT8;
      buf[pos++] = x;
    } else if (x < 0x100) {
      buf[pos++] = UINT8;
      buf[pos++] = x;
    } else if (x < 0x8000) {
      buf[pos++] = INT16;
      buf[pos++] = x >>> 8;
      buf[pos++] = x & 0xff;
    } else if (x < 0x10000) {
      buf[pos++] = UINT16;
      buf[pos++] = x >>> 8;
      buf[pos++] = x & 0xff;
    } else if (x < 0x1000000) {
      buf[pos++] = UINT24;
      buf[pos++] = x >>> 16;
      buf[pos++] = (x >>> 8) & 0xff;
      buf[pos++] = x & 0xff;
    } else if (x < 0x80000000) {
      buf[pos++] = INT32;
      writeU32(x);
    } else if (x < TWO32) {
      buf[pos++] = UINT32;
      writeU32(x);
    } else writeWideInteger(x);
  } else if (x >= -0x80) {
    buf[pos++] = INT8;
    buf[pos++] = x & 0xff;
  } else if (x >= -0x8000) {
    buf[pos++] = INT16;
    buf[pos++] = (x >> 8) & 0xff;
    buf[pos++] = x & 0xff;
  } else if (x >= -0x80000000) {
    buf[pos++] = INT32;
    writeU32(x >>> 0);
  } else writeWideInteger(x);
}

function writeU32(x: number): void {
  buf[pos++] = x >>> 24;
  buf[pos++] = (x >>> 16) & 0xff;
  buf[pos++] = (x >>> 8) & 0xff;
  buf[pos++] = x & 0xff;
}

/**
 * A safe integer beyond 32 bits as type 24 (two's complement, fewest bytes), without BigInt:
 * millisecond timestamps take this path, so it is hot for pathpoint data.
 */
function writeWideInteger(x: number): void {
  const hi = Math.floor(x / TWO32); // exact: |hi| < 2^21
  const lo = x - hi * TWO32; // 0 .. 2^32-1
  // Bytes needed so that -2^(8n-1) <= x < 2^(8n-1); 5 to 7 for |x| in [2^31, 2^53).
  const n = hi >= -0x80 && hi < 0x80 ? 5 : hi >= -0x8000 && hi < 0x8000 ? 6 : 7;
  buf[pos++] = BIGINT;
  buf[pos++] = n;
  for (let k = n - 5; k >= 0; k--) buf[pos++] = (hi >> (8 * k)) & 0xff;
  writeU32(lo);
}

function writeBigInt(b: bigint): void {
  if (b >= -0x80000000n && b < 0x1_0000_0000n) {
    writeInteger(Number(b));
    return;
  }
  let n = 1;
  while (b >= 1n << BigInt(8 * n - 1) || b < -(1n << BigInt(8 * n - 1))) n++;
  if (n > 255) throw new EncodingError('integer needs more than 255 bytes');
  ensure(2 + n);
  buf[pos++] = BIGINT;
  buf[pos++] = n;
  let v = b < 0n ? (1n << BigInt(8 * n)) + b : b;
  for (let i = n - 1; i >= 0; i--) {
    buf[pos + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  pos += n;
}

function writeBytes(bytes: Uint8Array): void {
  const len = bytes.length;
  ensure(5 + len);
  writeSizeHeader(len, 0, -1, BIN8, BIN16, BIN32); // binary has no short form
  buf.set(bytes, pos);
  pos += len;
}

// ---- containers ---------------------------------------------------------------------------

/** Writes a container header: short form below 16, else 8/16/32-bit count. */
function writeHeader(count: number, short: number, t8: number, t16: number, t32: number): void {
  ensure(5);
  writeSizeHeader(count, short, 15, t8, t16, t32);
}

/** A length or count: the short form up to shortMax (-1: the type has none), else 8/16/32-bit. */
function writeSizeHeader(n: number, short: number, shortMax: number, t8: number, t16: number, t32: number): void {
  if (n <= shortMax) buf[pos++] = short | n;
  else if (n <= 0xff) {
    buf[pos++] = t8;
    buf[pos++] = n;
  } else if (n <= 0xffff) {
    buf[pos++] = t16;
    buf[pos++] = n >>> 8;
    buf[pos++] = n & 0xff;
  } else {
    buf[pos++] = t32;
    buf.writeUInt32BE(n, pos);
    pos += 4;
  }
}

function headerSize(count: number): number {
  return count < 16 ? 1 : count <= 0xff ? 2 : count <= 0xffff ? 3 : 5;
}

function writeList(list: unknown[], depth: number): void {
  const n = list.length;
  writeHeader(n, SHORT_LIST, LIST8, LIST16, LIST32);
  let i = 0;
  try {
    for (; i < n; i++) {
      const item = list[i];
      if (item === undefined) throw new EncodingError('cannot encode undefined in a list');
      writeValue(item, depth);
    }
  } catch (err) {
    throw withPathSegment(err, `[${i}]`);
  }
}

function writeObject(obj: Record<string, unknown>, depth: number): void {
  const keys = Object.keys(obj);
  let count = keys.length;
  const headerAt = pos;
  writeHeader(count, SHORT_OBJ, OBJ8, OBJ16, OBJ32);
  let i = 0;
  try {
    for (; i < keys.length; i++) {
      const key = keys[i];
      const item = obj[key];
      // Like JSON.stringify, a property whose value is undefined is left out.
      if (item === undefined) {
        count--;
        continue;
      }
      if (!writeKey(key)) {
        pos = headerAt;
        writeObjectAsMap(obj, keys, depth);
        return;
      }
      writeValue(item, depth);
    }
  } catch (err) {
    throw withPathSegment(err, propertySegment(keys[i]));
  }
  if (count !== keys.length) patchHeader(headerAt, keys.length, count, SHORT_OBJ, OBJ8, OBJ16, OBJ32);
}

/** Writes a string-key object's key (1-byte length + UTF-8); false when it is over 255 bytes. */
function writeKey(key: string): boolean {
  const n = key.length;
  if (n > 255) return false;
  ensure(1 + n * 3);
  const h = pos++;
  const len = writeUtf8Short(key);
  if (len > 255) return false;
  buf[h] = len;
  return true;
}

/** A header was written for `written` entries but `actual` went out: rewrite it in place. */
function patchHeader(at: number, written: number, actual: number, short: number, t8: number, t16: number, t32: number): void {
  const oldSize = headerSize(written);
  const newSize = headerSize(actual);
  const bodyEnd = pos;
  if (newSize !== oldSize) {
    buf.copyWithin(at + newSize, at + oldSize, bodyEnd);
  }
  pos = at;
  writeHeader(actual, short, t8, t16, t32);
  pos = bodyEnd + newSize - oldSize;
}

/** An object with a key longer than 255 bytes goes out as an any-key map of string keys. */
function writeObjectAsMap(obj: Record<string, unknown>, keys: string[], depth: number): void {
  const entries: [string, unknown][] = [];
  for (const key of keys) if (obj[key] !== undefined) entries.push([key, obj[key]]);
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
    writeHeader(map.size, SHORT_OBJ, OBJ8, OBJ16, OBJ32);
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
  writeHeader(count, SHORT_MAP, MAP8, MAP16, MAP32);
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
