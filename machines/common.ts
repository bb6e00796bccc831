/**
 * Shared vocabulary of the machines: the frames they ask to send and are handed, links, the
 * one backoff function every retry uses (device and server), the HTTPS status convention, and
 * how a machine reports a fault. Pure functions and types only.
 */
import type { FrameType } from '../src/protocol/frames.js';

/** A source of uniform numbers in [0, 1). Injected, so tests can pin jitter to its bounds. */
export type Random = () => number;

/**
 * A frame a machine wants on the wire. The socket (runtime) encodes it: `encoded` (already
 * MiniJSON, e.g. straight from the spool) is sent as is; otherwise `payload` is MiniJSON-encoded;
 * neither means an empty payload.
 */
export interface OutFrame {
  type: FrameType;
  tid: number;
  payload?: unknown;
  encoded?: Uint8Array;
}

/** A frame as the socket (runtime) hands it in: header fields plus the decoded MiniJSON payload (undefined when empty). */
export interface InFrame {
  type: number;
  tid: number;
  payload: unknown;
}

/** Where orders, logs and data currently go (spec §10). `none`: hold everything. */
export type Link = 'ngtt' | 'https' | 'none';

/** `{type: 'LINK', link}`: the supervisor tells the upload and log machines where to send. */
export interface LinkEvent {
  type: 'LINK';
  link: Link;
}

/** `{type: 'TRANSMIT', frame}`: a child asks its parent to send a frame on the live NGTT connection. */
export interface TransmitEvent {
  type: 'TRANSMIT';
  frame: OutFrame;
}

/** `defaults` with what `given` sets; a key given as undefined keeps its default (unlike a spread). */
export function withDefaults<T extends object>(defaults: T, given: Partial<T> | undefined): T {
  const out = { ...defaults };
  if (given) for (const key of Object.keys(given) as (keyof T)[]) if (given[key] !== undefined) out[key] = given[key] as T[keyof T];
  return out;
}

// ---- backoff --------------------------------------------------------------------------------

export interface BackoffOptions {
  /** First delay. */
  baseMs: number;
  /** The doubling stops here (before jitter). */
  maxMs: number;
  /** Relative jitter: the delay is spread uniformly over nominal × [1 − jitter, 1 + jitter). */
  jitter: number;
}

/** Spec §5.6: 1 s doubling to 60 s; ±20 % jitter. */
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 60_000, jitter: 0.2 };

/** The delay before retry number `attempt` (1-based) without jitter: base·2^(attempt−1), capped. */
export function nominalBackoff(attempt: number, o: BackoffOptions): number {
  const n = Math.max(1, Math.floor(attempt));
  // Cap the exponent first so large attempt counts never overflow to Infinity.
  return Math.min(o.maxMs, o.baseMs * 2 ** Math.min(n - 1, 52));
}

/**
 * The jittered delay. Jitter is ±`jitter` around the nominal value and is applied after the
 * cap, so at the cap the delay spreads over 48–72 s: clamping at 60 s instead would pile half
 * the fleet onto exactly 60 s, the lock-step jitter is there to break.
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: Random): number {
  const nominal = nominalBackoff(attempt, o);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(nominal * (1 - o.jitter + 2 * o.jitter * r));
}

// ---- HTTPS ----------------------------------------------------------------------------------

/**
 * Spec §9: 2xx done, 4xx the request itself was wrong (never retry), anything else (5xx, or
 * the promise actor rejecting: no connection) means retry with backoff.
 */
export type HttpOutcome = 'ok' | 'refused' | 'retry';
export function httpOutcome(status: number): HttpOutcome {
  if (status >= 200 && status < 300) return 'ok';
  if (status >= 400 && status < 500) return 'refused';
  return 'retry';
}

/**
 * What a provided HTTPS promise actor resolves with: any HTTP answer, with its decoded body. It
 * rejects when no usable answer came (no connection, timeout, an undecodable success body):
 * that is retried like a 5xx.
 */
export interface HttpResult {
  status: number;
  body?: unknown;
}

// ---- faults ---------------------------------------------------------------------------------

/**
 * A machine tells its parent that part of it failed and is retrying (`FAULT`), or works again
 * (`RECOVERED`). The supervisor passes both on to the runtime, which shows them in status().
 */
export type FaultReport = { type: 'FAULT'; source: string; error: string } | { type: 'RECOVERED'; source: string };

/** An error as one line of text, whatever was thrown. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
