/**
 * Pathpoint types (spec §6: the first letter of a pathpoint's name gives its type), after the
 * SMOK convention:
 *
 *   B  binary, 0 or 1        W  unsigned 16-bit int     w  signed 16-bit int
 *   f  float                 d  double                  u  Unicode string
 *
 * A leading `r` ("reparse" pathpoint) is skipped: `rW1` is a W. Any other letter is an
 * untyped pathpoint whose values are not checked. Checking is deliberately light: no
 * coercion (the string "5" is not a W, `true` is not a B), a value of the wrong kind is a
 * `type` error, a number out of range (or not an integer where one is needed) is `invalid`.
 */
import type { ReadErrorCode } from '../protocol/index.js';

export type PathpointType = 'B' | 'W' | 'w' | 'f' | 'd' | 'u';

const TYPES = new Set<string>(['B', 'W', 'w', 'f', 'd', 'u']);

export function pathpointType(path: string): PathpointType | undefined {
  const letter = path[0] === 'r' && path.length > 1 ? path[1] : path[0];
  return TYPES.has(letter) ? (letter as PathpointType) : undefined;
}

const INT_RANGES: Partial<Record<PathpointType, [number, number]>> = { B: [0, 1], W: [0, 0xffff], w: [-0x8000, 0x7fff] };

/**
 * Why `value` does not fit the pathpoint at `path`, or undefined when it does. Whatever the
 * type, a value must be one the wire carries (spec §8): a finite number, a bigint or a string.
 */
export function valueProblem(path: string, value: unknown): ReadErrorCode | undefined {
  if (typeof value === 'number' && !Number.isFinite(value)) return 'invalid';
  if (typeof value !== 'number' && typeof value !== 'bigint' && typeof value !== 'string') return 'type';
  const type = pathpointType(path);
  if (type === undefined) return undefined;
  if (type === 'u') return typeof value === 'string' ? undefined : 'type';
  if (typeof value === 'string') return 'type';
  const range = INT_RANGES[type];
  if (!range) return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n >= range[0] && n <= range[1] ? undefined : 'invalid';
}
