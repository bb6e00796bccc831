/** Converts between the vectors' tagged JSON form (test/fixtures/minijson/README.md) and JS values. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Tagged =
  | { null: null }
  | { bool: boolean }
  | { int: string }
  | { f32: number | string }
  | { f64: number | string }
  | { str: string }
  | { bytes: string }
  | { list: Tagged[] }
  | { map: [Tagged, Tagged][] };

const here = dirname(fileURLToPath(import.meta.url));
/** The reference vectors of the MiniJSON codec, kept in the repository (a copy of the vectors made with the Python codec). */
export const VECTORS = join(here, '..', 'fixtures', 'minijson');

export function loadVectors<T>(file: string): T[] {
  return JSON.parse(readFileSync(join(VECTORS, file), 'utf8')) as T[];
}

function float(x: number | string): number {
  if (typeof x === 'number') return x;
  if (x === 'NaN') return NaN;
  if (x === 'Infinity') return Infinity;
  if (x === '-Infinity') return -Infinity;
  throw new Error(`bad float tag ${x}`);
}

export function fromTagged(t: Tagged): unknown {
  if ('null' in t) return null;
  if ('bool' in t) return t.bool;
  if ('int' in t) {
    const b = BigInt(t.int);
    return b >= -BigInt(Number.MAX_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }
  if ('f32' in t) return float(t.f32);
  if ('f64' in t) return float(t.f64);
  if ('str' in t) return t.str;
  if ('bytes' in t) return new Uint8Array(Buffer.from(t.bytes, 'hex'));
  if ('list' in t) return t.list.map(fromTagged);
  const entries = t.map.map(([k, v]) => [fromTagged(k), fromTagged(v)] as const);
  if (entries.every(([k]) => typeof k === 'string')) {
    const obj: Record<string, unknown> = {};
    for (const [k, v] of entries) Object.defineProperty(obj, k as string, { value: v, enumerable: true, writable: true, configurable: true });
    return obj;
  }
  return new Map(entries);
}

/** Strict structural equality: numbers by Object.is, bigint by value, key order significant. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' || typeof b === 'number') return Object.is(a, b);
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return a === b;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return false;
    const ea = [...a];
    const eb = [...b];
    return ea.every(([k, v], i) => sameValue(k, eb[i][0]) && sameValue(v, eb[i][1]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameValue((a as any)[k], (b as any)[k]));
}

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
export const unhex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
