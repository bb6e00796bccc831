/**
 * Pathpoint data upload (spec §8): batching, durable spool, pipelining, two transports.
 * Three parallel regions:
 *
 * collecting — when to cut a batch. The values themselves are never in the machine: the runtime
 *   stores them durably in its spool first, then reports how many with PUSH {values, bytes}.
 *   The machine only counts the values spooled but not yet in a batch (`open`):
 *   empty ──PUSH──▶ open ──(values ≥ maxBatchValues | bytes ≥ maxBatchBytes | maxBatchAgeMs | FLUSH)──▶
 *   ready ──(spool has room)──▶ cutting (`cutBatch`: the runtime forms a batch of the oldest
 *   unbatched values within maxBatchValues/maxBatchBytes; its id is the spool's) ──▶ empty,
 *   and again while what is left is still due. So one huge PUSH becomes several batches, each
 *   within the limits, and a crash loses nothing (the values were durable before PUSH).
 *   After a restart the runtime passes the unconfirmed batch ids as `pending` and the values
 *   spooled but not yet cut as `unbatched`.
 *
 * spool — backpressure, observable as tag `full`:
 *   accepting ⇄ full (spooled batches, sent or not, ≥ maxSpooledBatches). While full no batch is
 *   cut; values keep arriving in the spool, whose own capacity is the runtime's backpressure.
 *
 * link — where spooled batches go (LINK {link} from the supervisor; `route` picks the state):
 *   offline  — hold.
 *   ngtt     — idle ⇄ loading: while fewer than `window` DATA_STREAMs are unanswered, `loadBatch`
 *              the oldest queued batch and report TRANSMIT {DATA_STREAM, tid} (pipelining).
 *              BATCH.CONFIRMED {tid} → `batchConfirmed`; BATCH.REJECTED {tid} → `setAside`
 *              (never resent). Leaving ngtt (connection down) puts unanswered batches back at the
 *              front of the queue: they are sent again on the next link.
 *   https    — idle → posting (`postBatch`, one at a time) → 2xx `batchConfirmed` / 4xx `setAside`
 *              / 5xx or no connection → retryWait (backoff 1 s…60 s) → posting. A LINK change while
 *              posting waits for the POST to finish, so a batch is never on both transports.
 *
 * Batch ids are the spool's (returned by `cutBatch`); tids are per connection, 1..0x7FFE
 * (0x7FFF is the connection's PING).
 */
import { assign, enqueueActions, fromPromise, not, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import type { PathpointScalar, PathpointSeries, PathpointValue } from '../src/protocol/messages.js';
import { type BackoffOptions, type HttpResult, type Link, type LinkEvent, type Random, type TransmitEvent, DEFAULT_BACKOFF, backoffDelay, httpOutcome } from './common.js';

export const MAX_DATA_TID = 0x7ffe;

export interface UploadOptions {
  /** Cut a batch at this many values; no batch holds more. */
  maxBatchValues: number;
  /** Cut a batch at this many (estimated) bytes; no batch encodes larger, bar a single value. */
  maxBatchBytes: number;
  /** Cut a batch this long after the first unbatched value arrived. */
  maxBatchAgeMs: number;
  /** DATA_STREAM frames unanswered at once over NGTT. */
  window: number;
  /** Spooled batches (unconfirmed, not set aside) at which backpressure starts. */
  maxSpooledBatches: number;
  /** HTTPS retry backoff. */
  retry: BackoffOptions;
}

export const DEFAULT_UPLOAD_OPTIONS: UploadOptions = {
  maxBatchValues: 1000,
  maxBatchBytes: 64 * 1024,
  maxBatchAgeMs: 5_000,
  window: 8,
  maxSpooledBatches: 10_000,
  retry: DEFAULT_BACKOFF,
};

export interface UploadInput {
  random: Random;
  options?: Partial<Omit<UploadOptions, 'retry'>> & { retry?: Partial<BackoffOptions> };
  /** Batches already in the spool from an earlier run, unconfirmed and not set aside, oldest first. */
  pending?: number[];
  /** Values already in the spool from an earlier run but in no batch yet. */
  unbatched?: { values: number; bytes: number };
}

/** Values in the spool but in no batch yet. */
export interface OpenBatch {
  values: number;
  bytes: number;
}

export interface UploadContext {
  options: UploadOptions;
  random: Random;
  link: Link;
  open: OpenBatch;
  /** Cut everything unbatched (FLUSH, or the oldest value is old enough), not only full batches. */
  flushAll: boolean;
  /** Spooled batches not on the wire, oldest first. Over HTTPS the head is the one being posted. */
  queue: number[];
  /** DATA_STREAMs sent on the current NGTT connection and not yet answered. */
  inFlight: { id: number; tid: number }[];
  /** The last tid handed out; the next one is searched from here. */
  tidCursor: number;
  /** Failed HTTPS attempts in a row, and the current retry delay. */
  retries: number;
  retryMs: number;
  confirmed: number;
  rejected: number;
}

export type UploadEvent =
  /** `values` more values (about `bytes` of MiniJSON) are durably in the spool. */
  | { type: 'PUSH'; values: number; bytes: number }
  | { type: 'FLUSH' }
  | LinkEvent
  | { type: 'BATCH.CONFIRMED'; tid: number }
  | { type: 'BATCH.REJECTED'; tid: number; reason?: string };

/** What `cutBatch` is asked: form one batch of the oldest unbatched values within these limits. */
export interface CutBatchInput {
  maxValues: number;
  maxBytes: number;
}

/** The batch formed (its spool id, value count and encoded size), or null when nothing was unbatched. */
export type CutBatch = { id: number; values: number; bytes: number } | null;

/** What `loadBatch` resolves with: the DATA_STREAM payload, as a value or already MiniJSON-encoded. */
export interface LoadedBatch {
  payload?: PathpointSeries[];
  encoded?: Uint8Array;
}

const scalarBytes = (v: PathpointScalar | false | string): number =>
  typeof v === 'string' ? v.length * 3 + 5 : 9; // UTF-8 worst case + header; numbers ≤ 8 bytes + type
const valueBytes = (v: PathpointValue): number => 2 + v.reduce<number>((n, x) => n + scalarBytes(x as PathpointScalar), 0);

/** An upper-bound estimate of the MiniJSON size of `series` (the machine does not encode). */
export function estimateBytes(series: PathpointSeries[]): number {
  let n = 5;
  for (const s of series) n += 20 + scalarBytes(s.path) + s.values.reduce((m, v) => m + valueBytes(v), 0);
  return n;
}

/** The next tid after `cursor` (wrapping within 1..MAX_DATA_TID) not used by an unanswered batch. */
export function nextTid(cursor: number, inUse: { tid: number }[]): number {
  let tid = cursor;
  do tid = tid >= MAX_DATA_TID ? 1 : tid + 1;
  while (inUse.some((b) => b.tid === tid));
  return tid;
}

const linkIs = (link: Link) => ({ type: 'linkIs' as const, params: link });
const idOfTid = (c: UploadContext, tid: number) => c.inFlight.find((b) => b.tid === tid)!.id;
const head = (c: UploadContext) => c.queue[0];

const EMPTY: OpenBatch = { values: 0, bytes: 0 };
const isDue = (c: UploadContext) =>
  c.open.values > 0 && (c.flushAll || c.open.values >= c.options.maxBatchValues || c.open.bytes >= c.options.maxBatchBytes);
const spooled = (c: UploadContext) => c.queue.length + c.inFlight.length;

export const uploadMachine = setup({
  types: {
    context: {} as UploadContext,
    events: {} as UploadEvent,
    input: {} as UploadInput,
  },
  actors: {
    /** Form a batch in the spool (see CutBatchInput); rejects if the spool fails. */
    cutBatch: fromPromise<CutBatch, CutBatchInput>(async () => {
      throw new Error('upload machine: provide the `cutBatch` actor');
    }),
    /** NGTT: read batch `id` from the spool. */
    loadBatch: fromPromise<LoadedBatch, { id: number }>(async () => {
      throw new Error('upload machine: provide the `loadBatch` actor');
    }),
    /** HTTPS: POST /v1/device/pathpoints with batch `id`; resolve {status}, reject when there is no connection. */
    postBatch: fromPromise<HttpResult, { id: number }>(async () => {
      throw new Error('upload machine: provide the `postBatch` actor');
    }),
  },
  actions: {
    report: enqueueActions(({ enqueue, self }, params: TransmitEvent) => {
      if (self._parent) enqueue.sendTo(self._parent, params);
    }),
    /** The server stored batch `id`: drop it from the spool. */
    batchConfirmed: (_, _params: { id: number }) => {
      throw new Error('upload machine: provide the `batchConfirmed` action');
    },
    /** The server refused batch `id`: keep it aside for inspection, never send it again. */
    setAside: (_, _params: { id: number; reason: string }) => {
      throw new Error('upload machine: provide the `setAside` action');
    },
    addValues: assign(({ context, event }) =>
      event.type === 'PUSH' ? { open: { values: context.open.values + event.values, bytes: context.open.bytes + event.bytes } } : {},
    ),
    flushAll: assign(({ context }) => ({ flushAll: context.open.values > 0 })),
    /** A batch was cut: it joins the queue; what is left stays unbatched. */
    queueCut: assign(({ context }, cut: CutBatch) => {
      if (!cut) return { open: EMPTY, flushAll: false };
      const values = Math.max(0, context.open.values - cut.values);
      const open = values === 0 ? EMPTY : { values, bytes: Math.max(0, context.open.bytes - cut.bytes) };
      return { open, flushAll: context.flushAll && values > 0, queue: [...context.queue, cut.id] };
    }),
    /** NGTT: the head of the queue goes on the wire with a fresh tid (it becomes the last of inFlight). */
    moveHeadInFlight: assign(({ context }) => {
      const [id, ...rest] = context.queue;
      const tid = nextTid(context.tidCursor, context.inFlight);
      return { queue: rest, inFlight: [...context.inFlight, { id, tid }], tidCursor: tid };
    }),
    dropInFlight: assign(({ context, event }) => ({
      inFlight: context.inFlight.filter((b) => !('tid' in event) || b.tid !== event.tid),
    })),
    dropHead: assign(({ context }) => ({ queue: context.queue.slice(1), retries: 0 })),
    countConfirmed: assign({ confirmed: ({ context }) => context.confirmed + 1 }),
    countRejected: assign({ rejected: ({ context }) => context.rejected + 1 }),
    /** The link went away: unanswered batches go back to the front, oldest first. */
    requeueInFlight: assign(({ context }) => ({
      queue: [...context.inFlight.map((b) => b.id), ...context.queue].sort((a, b) => a - b),
      inFlight: [],
    })),
    nextRetry: assign(({ context }) => ({
      retries: context.retries + 1,
      retryMs: backoffDelay(context.retries + 1, context.options.retry, context.random),
    })),
  },
  guards: {
    due: ({ context }) => isDue(context),
    unbatched: ({ context }) => context.open.values > 0,
    spoolHasRoom: ({ context }) => spooled(context) < context.options.maxSpooledBatches,
    spoolFull: ({ context }) => spooled(context) >= context.options.maxSpooledBatches,
    linkIs: ({ context }, link: Link) => context.link === link,
    /** The answer is for an unanswered DATA_STREAM of this connection (others are late or foreign: ignored). */
    inFlight: ({ context, event }) => 'tid' in event && context.inFlight.some((b) => b.tid === event.tid),
    queued: ({ context }) => context.queue.length > 0,
    canTransmit: ({ context }) =>
      context.link === 'ngtt' && context.queue.length > 0 && context.inFlight.length < context.options.window,
  },
  delays: {
    maxBatchAge: ({ context }) => context.options.maxBatchAgeMs,
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: 'upload',
  type: 'parallel',
  context: ({ input }) => ({
    options: {
      ...DEFAULT_UPLOAD_OPTIONS,
      ...input.options,
      retry: { ...DEFAULT_BACKOFF, ...input.options?.retry },
    },
    random: input.random,
    link: 'none',
    open: input.unbatched && input.unbatched.values > 0 ? { ...input.unbatched } : EMPTY,
    flushAll: false,
    queue: [...(input.pending ?? [])],
    inFlight: [],
    tidCursor: 0,
    retries: 0,
    retryMs: 0,
    confirmed: 0,
    rejected: 0,
  }),
  on: {
    LINK: { actions: assign({ link: ({ event }) => event.link }) },
  },
  states: {
    collecting: {
      initial: 'empty',
      on: { PUSH: { actions: 'addValues' }, FLUSH: { actions: 'flushAll' } },
      states: {
        empty: {
          always: { guard: 'unbatched', target: 'open' },
        },
        open: {
          after: { maxBatchAge: { actions: 'flushAll' } },
          always: { guard: 'due', target: 'ready' },
        },
        /** Due, waiting for room in the spool (backpressure). */
        ready: {
          always: { guard: 'spoolHasRoom', target: 'cutting' },
        },
        cutting: {
          invoke: {
            src: 'cutBatch',
            input: ({ context }) => ({ maxValues: context.options.maxBatchValues, maxBytes: context.options.maxBatchBytes }),
            onDone: { target: 'empty', actions: { type: 'queueCut', params: ({ event }) => event.output } },
            // The spool failed: try again after maxBatchAge rather than spin.
            onError: 'failed',
          },
        },
        failed: {
          after: { maxBatchAge: 'empty' },
        },
      },
    },
    spool: {
      initial: 'accepting',
      states: {
        accepting: { always: { guard: 'spoolFull', target: 'full' } },
        full: { tags: ['full'], always: { guard: 'spoolHasRoom', target: 'accepting' } },
      },
    },
    link: {
      initial: 'route',
      states: {
        route: {
          always: [
            { guard: linkIs('ngtt'), target: 'ngtt' },
            { guard: linkIs('https'), target: 'https' },
            { target: 'offline' },
          ],
        },
        offline: {
          always: { guard: not(linkIs('none')), target: 'route' },
        },
        ngtt: {
          exit: 'requeueInFlight',
          always: { guard: not(linkIs('ngtt')), target: 'route' },
          on: {
            'BATCH.CONFIRMED': {
              guard: 'inFlight',
              actions: [{ type: 'batchConfirmed', params: ({ context, event }) => ({ id: idOfTid(context, event.tid) }) }, 'dropInFlight', 'countConfirmed'],
            },
            'BATCH.REJECTED': {
              guard: 'inFlight',
              actions: [
                { type: 'setAside', params: ({ context, event }) => ({ id: idOfTid(context, event.tid), reason: event.reason ?? 'rejected' }) },
                'dropInFlight',
                'countRejected',
              ],
            },
          },
          initial: 'idle',
          states: {
            idle: { always: { guard: 'canTransmit', target: 'loading' } },
            loading: {
              invoke: {
                src: 'loadBatch',
                input: ({ context }) => ({ id: context.queue[0] }),
                onDone: {
                  target: 'idle',
                  actions: [
                    'moveHeadInFlight',
                    {
                      type: 'report',
                      params: ({ context, event }) => ({
                        type: 'TRANSMIT',
                        frame: { type: FrameType.DATA_STREAM, tid: context.inFlight.at(-1)!.tid, payload: event.output.payload, encoded: event.output.encoded },
                      }),
                    },
                  ],
                },
                // An unreadable batch can never be sent: set it aside like a rejected one.
                onError: {
                  target: 'idle',
                  actions: [
                    { type: 'setAside', params: ({ context, event }) => ({ id: head(context), reason: `unreadable: ${String(event.error)}` }) },
                    'dropHead',
                    'countRejected',
                  ],
                },
              },
            },
          },
        },
        https: {
          initial: 'idle',
          states: {
            idle: {
              always: [
                { guard: not(linkIs('https')), target: '#upload.link.route' },
                { guard: 'queued', target: 'posting' },
              ],
            },
            posting: {
              invoke: {
                src: 'postBatch',
                input: ({ context }) => ({ id: context.queue[0] }),
                onDone: [
                  {
                    guard: ({ event }) => httpOutcome(event.output.status) === 'ok',
                    target: 'idle',
                    actions: [{ type: 'batchConfirmed', params: ({ context }) => ({ id: head(context) }) }, 'dropHead', 'countConfirmed'],
                  },
                  {
                    guard: ({ event }) => httpOutcome(event.output.status) === 'refused',
                    target: 'idle',
                    actions: [
                      { type: 'setAside', params: ({ context, event }) => ({ id: head(context), reason: `HTTP ${event.output.status}` }) },
                      'dropHead',
                      'countRejected',
                    ],
                  },
                  { target: 'retryWait' },
                ],
                onError: 'retryWait',
              },
            },
            retryWait: {
              entry: 'nextRetry',
              always: { guard: not(linkIs('https')), target: '#upload.link.route' },
              after: { retry: 'posting' },
            },
          },
        },
      },
    },
  },
});
