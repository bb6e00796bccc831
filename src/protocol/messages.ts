/**
 * Payload shapes of NGTT frames and HTTPS bodies (spec §6–§8), with validators that turn a
 * decoded MiniJSON value into a typed one or say precisely what is wrong (PayloadError).
 * Both ends use them: the server on what devices upload, the device on the orders it gets.
 */
import { PayloadError } from './errors.js';

// ---- orders (§6) ---------------------------------------------------------------------------

export const Advise = { ADVISE: 0, FORCE: 1 } as const;
export type Advise = (typeof Advise)[keyof typeof Advise];
export const Disposition = { JOINABLE: 0, CANNOT_JOIN: 1 } as const;
export type Disposition = (typeof Disposition)[keyof typeof Disposition];

export interface ReadOrder {
  type: 'read';
  path: string;
  advise?: Advise;
}
export interface WriteOrder {
  type: 'write';
  path: string;
  value: PathpointScalar;
  advise?: Advise;
  /** Unix seconds after which the write is dropped instead of executed. */
  stale_after?: number;
}
export interface WaitOrder {
  type: 'wait';
  /** Seconds. */
  time: number;
}
export interface MessageOrder {
  type: 'message';
  uuid: string;
}
export interface SysctlOrder {
  type: 'sysctl';
  op_type: string;
  op_args: unknown;
}
export type Order = ReadOrder | WriteOrder | WaitOrder | MessageOrder | SysctlOrder;
export type OrderType = Order['type'];

export interface Section {
  orders: Order[];
  disposition: Disposition;
}

/**
 * The stored order's stable id travels in the ORDER payload as key `id` on each section
 * (sections are maps, so peers that do not know the key ignore it). Devices use it to
 * recognise a redelivered order (spec §5.4).
 */
export interface WireSection extends Section {
  id?: string;
}

// ---- pathpoint data (§8) --------------------------------------------------------------------

export type PathpointScalar = number | bigint | string;
export const ERROR_CODES = ['malformed', 'timeout', 'invalid', 'type'] as const;
export type ReadErrorCode = (typeof ERROR_CODES)[number];
/** `[timestamp_ms, value]` or `[false, timestamp_ms, error_code]`. */
export type PathpointValue = [number, PathpointScalar] | [false, number, ReadErrorCode];
export interface PathpointSeries {
  path: string;
  values: PathpointValue[];
}

/** `[{path, storage_level}]` for PUT /v1/device/pathpoints. */
export interface PathpointDeclaration {
  path: string;
  storage_level: number;
}

// ---- logs (§7) ------------------------------------------------------------------------------

export const LogLevel = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 } as const;
export interface CompressedMessage {
  encoding: 'base64-gzip';
  content: string;
}
export interface LogRecord {
  service: string;
  /** Unix microseconds, strictly increasing per device. */
  when: number;
  message: string | CompressedMessage;
  level: number;
  exception_text?: string;
}

// ---- SYNC_BAOB (§4) -------------------------------------------------------------------------

/** SYNC_BAOB_REQUEST payload: `{key: localVersion}`. */
export type BaobSyncRequest = Record<string, number>;

/**
 * SYNC_BAOB_RESPONSE payload (spec §11). `delete` is this implementation's addition (the keys
 * the server does not have, which the device should delete, as HTTPS `should_delete` says);
 * clients that do not know it ignore it.
 */
export interface BaobSyncResponse {
  download: string[];
  upload: string[];
  delete?: string[];
}

/** Longest BAOB key, in UTF-8 bytes. */
export const MAX_BAOB_KEY_BYTES = 255;

/**
 * Why `key`/`version` cannot name a BAOB, or undefined. Keys travel as one URL path segment
 * (`/v1/device/baobs/<key>`, unescaped by the deployed client): no `/`, no control characters.
 */
export function baobProblem(key: unknown, version: unknown): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'a BAOB key must be a non-empty string';
  if (Buffer.byteLength(key) > MAX_BAOB_KEY_BYTES) return `BAOB key longer than ${MAX_BAOB_KEY_BYTES} bytes`;
  if (/[\/\u0000-\u001f\u007f]/.test(key)) return `BAOB key ${JSON.stringify(key)} contains "/" or a control character`;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) return `BAOB ${JSON.stringify(key)}: version must be a non-negative integer`;
  return undefined;
}

// ---- device configuration (§9) ------------------------------------------------------------

export interface CultureContext {
  language: string;
  timezone: string;
  units: string;
}

/** GET /v1/device: what the server knows about the device. */
export interface DeviceConfig {
  device_id: string;
  verbose_name: string;
  facets: string[];
  culture_context: CultureContext;
  slave_devices: unknown[];
}

// ---- validators -----------------------------------------------------------------------------

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array) && !(x instanceof Map);
const isScalar = (x: unknown): x is PathpointScalar =>
  (typeof x === 'number' && Number.isFinite(x)) || typeof x === 'bigint' || typeof x === 'string';
const isTimestamp = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

function bad(where: string, what: string): never {
  throw new PayloadError(`${where}: ${what}`);
}

/** DATA_STREAM payload / POST /v1/device/pathpoints body. Throws PayloadError. */
export function parsePathpointData(payload: unknown): PathpointSeries[] {
  if (!Array.isArray(payload)) bad('$', 'expected a list of {path, values}');
  // The hot path of every upload: the error's path string is built only once something is wrong.
  for (let i = 0; i < payload.length; i++) {
    const series = payload[i];
    if (!isObject(series)) bad(`$[${i}]`, 'expected {path, values}');
    if (typeof series.path !== 'string' || series.path.length === 0) bad(`$[${i}].path`, 'expected a non-empty string');
    const values = series.values;
    if (!Array.isArray(values)) bad(`$[${i}].values`, 'expected a list');
    for (let j = 0; j < values.length; j++) {
      const v = values[j];
      if (!Array.isArray(v)) badValue(i, j, '', 'expected [timestamp_ms, value] or [false, timestamp_ms, error_code]');
      if (v.length === 2) {
        if (!isTimestamp(v[0])) badValue(i, j, '[0]', 'expected a timestamp in milliseconds');
        if (!isScalar(v[1])) badValue(i, j, '[1]', 'expected an int, float or string');
      } else if (v.length === 3 && v[0] === false) {
        if (!isTimestamp(v[1])) badValue(i, j, '[1]', 'expected a timestamp in milliseconds');
        if (!(ERROR_CODES as readonly unknown[]).includes(v[2])) badValue(i, j, '[2]', `expected one of ${ERROR_CODES.join(', ')}`);
      } else badValue(i, j, '', 'expected [timestamp_ms, value] or [false, timestamp_ms, error_code]');
    }
  }
  return payload as PathpointSeries[];
}

function badValue(series: number, value: number, element: string, what: string): never {
  bad(`$[${series}].values[${value}]${element}`, what);
}

/** LOGS payload / PUT /v1/device/device_logs body. Throws PayloadError. */
export function parseLogRecords(payload: unknown): LogRecord[] {
  if (!Array.isArray(payload)) bad('$', 'expected a list of log records');
  for (let i = 0; i < payload.length; i++) {
    const r = payload[i];
    const where = `$[${i}]`;
    if (!isObject(r)) bad(where, 'expected {service, when, message, level}');
    if (typeof r.service !== 'string') bad(`${where}.service`, 'expected a string');
    if (!isTimestamp(r.when)) bad(`${where}.when`, 'expected unix microseconds');
    const m = r.message;
    if (typeof m !== 'string' && !(isObject(m) && m.encoding === 'base64-gzip' && typeof m.content === 'string')) {
      bad(`${where}.message`, 'expected a string or {encoding: "base64-gzip", content}');
    }
    if (typeof r.level !== 'number' || !Number.isInteger(r.level)) bad(`${where}.level`, 'expected an integer level');
    if (r.exception_text !== undefined && r.exception_text !== null && typeof r.exception_text !== 'string') {
      bad(`${where}.exception_text`, 'expected a string');
    }
  }
  return payload as LogRecord[];
}

/** PUT /v1/device/pathpoints body. Throws PayloadError. */
export function parsePathpointDeclarations(payload: unknown): PathpointDeclaration[] {
  if (!Array.isArray(payload)) bad('$', 'expected a list of {path, storage_level}');
  payload.forEach((d, i) => {
    if (!isObject(d) || typeof d.path !== 'string' || d.path.length === 0) bad(`$[${i}]`, 'expected {path: string, storage_level}');
    if (typeof d.storage_level !== 'number' || !Number.isInteger(d.storage_level)) bad(`$[${i}].storage_level`, 'expected an integer');
  });
  return payload as PathpointDeclaration[];
}

export interface ParsedSections {
  sections: Section[];
  /** The stable order id, when the sender put one in (see WireSection). */
  id?: string;
  /** Orders left out because their type was missing, unknown or malformed (spec §6: skip, log). */
  skipped: { at: string; reason: string; order: unknown }[];
}

/**
 * A list of sections, as an ORDER payload or an HTTP poll response. Orders of an unknown or
 * missing type, or malformed ones, are skipped and reported (forward compatible); a payload
 * that is not a list of sections at all throws PayloadError.
 */
export function parseSections(payload: unknown): ParsedSections {
  if (!Array.isArray(payload)) bad('$', 'expected a list of sections');
  const result: ParsedSections = { sections: [], skipped: [] };
  payload.forEach((s, i) => {
    const where = `$[${i}]`;
    if (!isObject(s)) bad(where, 'expected {orders, disposition}');
    if (!Array.isArray(s.orders)) bad(`${where}.orders`, 'expected a list');
    const disposition = s.disposition ?? Disposition.JOINABLE;
    if (disposition !== 0 && disposition !== 1) bad(`${where}.disposition`, 'expected 0 (JOINABLE) or 1 (CANNOT_JOIN)');
    if (typeof s.id === 'string' && result.id === undefined) result.id = s.id;
    const orders: Order[] = [];
    s.orders.forEach((o, j) => {
      const at = `${where}.orders[${j}]`;
      const reason = orderProblem(o);
      if (reason) result.skipped.push({ at, reason, order: o });
      else orders.push(o as Order);
    });
    result.sections.push({ orders, disposition });
  });
  return result;
}

/** Why an order cannot be executed, or undefined when it is well formed. */
export function orderProblem(o: unknown): string | undefined {
  if (!isObject(o)) return 'not an object';
  const advise = o.advise;
  if (advise !== undefined && advise !== null && advise !== 0 && advise !== 1) return 'advise must be 0 or 1';
  switch (o.type) {
    case 'read':
      return typeof o.path === 'string' && o.path ? undefined : 'read needs a path';
    case 'write':
      if (typeof o.path !== 'string' || !o.path) return 'write needs a path';
      if (!isScalar(o.value)) return 'write needs a value (int, float or string)';
      if (o.stale_after !== undefined && o.stale_after !== null && typeof o.stale_after !== 'number') return 'stale_after must be unix seconds';
      return undefined;
    case 'wait':
      return typeof o.time === 'number' && o.time >= 0 && Number.isFinite(o.time) ? undefined : 'wait needs a time in seconds';
    case 'message':
      return typeof o.uuid === 'string' ? undefined : 'message needs a uuid';
    case 'sysctl':
      return typeof o.op_type === 'string' ? undefined : 'sysctl needs an op_type';
    case undefined:
      return 'order has no type';
    default:
      return `unknown order type ${JSON.stringify(o.type)}`;
  }
}

/** SYNC_BAOB_REQUEST payload `{key: version}` (empty payload: no BAOBs). Throws PayloadError. */
export function parseBaobSyncRequest(payload: unknown): Map<string, number> {
  if (payload === undefined || payload === null) return new Map();
  if (!isObject(payload)) bad('$', 'expected {key: version}');
  const out = new Map<string, number>();
  for (const [key, version] of Object.entries(payload)) {
    const problem = baobProblem(key, version);
    if (problem) bad(`$[${JSON.stringify(key)}]`, problem);
    out.set(key, version as number);
  }
  return out;
}

/** POST /v1/device/baobs body `[{key, version}]`. Throws PayloadError. */
export function parseBaobVersions(payload: unknown): Map<string, number> {
  if (payload === undefined || payload === null) return new Map();
  if (!Array.isArray(payload)) bad('$', 'expected a list of {key, version}');
  const out = new Map<string, number>();
  payload.forEach((b, i) => {
    if (!isObject(b)) bad(`$[${i}]`, 'expected {key, version}');
    const problem = baobProblem(b.key, b.version);
    if (problem) bad(`$[${i}]`, problem);
    out.set(b.key as string, b.version as number);
  });
  return out;
}

/** Strict check for orders an operator enqueues: any skipped order is an error. */
export function parseSectionsStrict(payload: unknown): Section[] {
  const parsed = parseSections(payload);
  if (parsed.skipped.length) bad(parsed.skipped[0].at, parsed.skipped[0].reason);
  if (parsed.sections.length === 0) bad('$', 'expected at least one section');
  return parsed.sections;
}
