import { encodeWithReserve } from '../minijson/index.js';

/** NGTT frame types (spec §4). */
export const FrameType = {
  PING: 0,
  ORDER: 1,
  ORDER_CONFIRM: 2,
  LOGS: 3,
  DATA_STREAM: 4,
  DATA_STREAM_CONFIRM: 5,
  DATA_STREAM_REJECT: 6,
  SYNC_BAOB_REQUEST: 7,
  SYNC_BAOB_RESPONSE: 8,
  ORDER_REJECT: 9,
  FETCH_ORDERS: 10,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k]));
/** `ORDER_CONFIRM`, or `UNKNOWN(42)` for a type this version does not know. */
export const frameTypeName = (type: number): string => NAMES[type] ?? `UNKNOWN(${type})`;
export const isKnownFrameType = (type: number): type is FrameType => type in NAMES;

/** One decoded frame. `payload` is raw (MiniJSON or empty); it may be a view of the received chunk. */
export interface Frame {
  tid: number;
  type: number;
  payload: Buffer;
}

/** length (uint32) + tid (uint16) + type (uint16), big-endian. */
export const HEADER_SIZE = 8;
export const DEFAULT_MAX_FRAME_LENGTH = 16 * 1024 * 1024;
/** tid 0 means "no reply expected". */
export const NO_REPLY_TID = 0;

/**
 * TLS ALPN protocol id by which a device says "I read NGTT as a byte stream: any number of
 * frames per read". The server may then let several frames share a TLS record; to a device that
 * does not offer it (the original Python client, which parses one frame per readable event,
 * spec §12) every frame goes in records of its own. This runtime's device offers it.
 */
export const NGTT_STREAM_ALPN = 'ngtt-stream';

function writeHeader(out: Buffer, length: number, tid: number, type: number): void {
  if (!Number.isInteger(tid) || tid < 0 || tid > 0xffff) throw new RangeError(`tid ${tid} is not a uint16`);
  if (!Number.isInteger(type) || type < 0 || type > 0xffff) throw new RangeError(`frame type ${type} is not a uint16`);
  out.writeUInt32BE(length, 0);
  out.writeUInt16BE(tid, 4);
  out.writeUInt16BE(type, 6);
}

/** The header alone, for a payload of `length` bytes written right after it (see NgttSocket.sendEncoded). */
export function encodeFrameHeader(tid: number, type: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE);
  writeHeader(out, length, tid, type);
  return out;
}

/** A frame with an already-encoded payload (or none), copied behind the header. */
export function encodeFrame(tid: number, type: number, payload?: Uint8Array): Buffer {
  const length = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(HEADER_SIZE + length);
  writeHeader(out, length, tid, type);
  if (payload) out.set(payload, HEADER_SIZE);
  return out;
}

/** A frame whose payload is `value` as MiniJSON, encoded straight behind the header (no copy). */
export function encodeValueFrame(tid: number, type: number, value: unknown): Buffer {
  const out = encodeWithReserve(value, HEADER_SIZE);
  writeHeader(out, out.length - HEADER_SIZE, tid, type);
  return out;
}
