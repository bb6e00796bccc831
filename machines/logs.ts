/**
 * Log upload (spec §7): best effort. Records wait in a bounded buffer; when it overflows the
 * oldest are dropped and counted (`dropped`). Nothing is spooled to disk and nothing is
 * confirmed: over NGTT a LOGS frame (tid 0) is fire and forget.
 *
 *   idle ──LOG──▶ collecting ──(maxBatchRecords | maxBatchAgeMs | FLUSH)──▶ due
 *   due ── link ngtt ──▶ TRANSMIT LOGS (up to maxBatchRecords) ──▶ idle
 *       ── link https ─▶ posting (`postLogs`) ── 2xx ▶ idle
 *                                             ── 4xx ▶ idle (the batch is dropped and counted)
 *                                             ── 5xx / no connection ▶ retryWait (batch back at the front)
 *       ── link none ──▶ stays due until a link comes (LINK {link})
 *   retryWait ──(backoff 1 s…60 s, or the link turned to NGTT)──▶ due
 *
 * A POST in flight finishes before a LINK change takes effect (its records are never sent twice).
 */
import { assign, enqueueActions, fromPromise, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import type { LogRecord } from '../src/protocol/messages.js';
import { type BackoffOptions, type HttpResult, type Link, type LinkEvent, type Random, type TransmitEvent, DEFAULT_BACKOFF, backoffDelay, httpOutcome } from './common.js';

export interface LogOptions {
  /** The buffer holds at most this many records; older ones are dropped first. */
  maxBuffered: number;
  /** Records per LOGS frame / PUT. */
  maxBatchRecords: number;
  /** Send this long after the first record of a batch at the latest. */
  maxBatchAgeMs: number;
  retry: BackoffOptions;
}

export const DEFAULT_LOG_OPTIONS: LogOptions = {
  maxBuffered: 1000,
  maxBatchRecords: 100,
  maxBatchAgeMs: 5_000,
  retry: DEFAULT_BACKOFF,
};

export interface LogsInput {
  random: Random;
  options?: Partial<Omit<LogOptions, 'retry'>> & { retry?: Partial<BackoffOptions> };
}

export interface LogsContext {
  options: LogOptions;
  random: Random;
  link: Link;
  buffer: LogRecord[];
  /** The batch being PUT over HTTPS. */
  sending: LogRecord[];
  /** Records lost: buffer overflow, or refused (4xx) by the server. */
  dropped: number;
  retries: number;
  retryMs: number;
}

export type LogsEvent = { type: 'LOG'; records: LogRecord[] } | { type: 'FLUSH' } | LinkEvent;

/** Keep the newest `max` records; count what falls off. */
function bounded(records: LogRecord[], max: number, dropped: number): Pick<LogsContext, 'buffer' | 'dropped'> {
  const over = Math.max(0, records.length - max);
  return { buffer: over ? records.slice(over) : records, dropped: dropped + over };
}

export const logsMachine = setup({
  types: {
    context: {} as LogsContext,
    events: {} as LogsEvent,
    input: {} as LogsInput,
  },
  actors: {
    /** PUT /v1/device/device_logs; resolve {status}, reject when there is no connection. */
    postLogs: fromPromise<HttpResult, { records: LogRecord[] }>(async () => {
      throw new Error('logs machine: provide the `postLogs` actor');
    }),
  },
  actions: {
    report: enqueueActions(({ enqueue, self }, params: TransmitEvent) => {
      if (self._parent) enqueue.sendTo(self._parent, params);
    }),
    append: assign(({ context, event }) =>
      event.type === 'LOG' ? bounded([...context.buffer, ...event.records], context.options.maxBuffered, context.dropped) : {},
    ),
    /** The first batch leaves the buffer (into `sending`, for HTTPS). */
    takeBatch: assign(({ context }) => ({
      sending: context.buffer.slice(0, context.options.maxBatchRecords),
      buffer: context.buffer.slice(context.options.maxBatchRecords),
    })),
    sent: assign({ sending: [], retries: 0 }),
    dropSending: assign(({ context }) => ({ sending: [], retries: 0, dropped: context.dropped + context.sending.length })),
    /** A failed PUT: its records go back to the front (they are the oldest), within the bound. */
    requeue: assign(({ context }) => ({
      sending: [],
      ...bounded([...context.sending, ...context.buffer], context.options.maxBuffered, context.dropped),
    })),
    nextRetry: assign(({ context }) => ({
      retries: context.retries + 1,
      retryMs: backoffDelay(context.retries + 1, context.options.retry, context.random),
    })),
  },
  guards: {
    linkIs: ({ context }, link: Link) => context.link === link,
    buffered: ({ context }) => context.buffer.length > 0,
    batchFull: ({ context }) => context.buffer.length >= context.options.maxBatchRecords,
  },
  delays: {
    maxBatchAge: ({ context }) => context.options.maxBatchAgeMs,
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: 'logs',
  context: ({ input }) => ({
    options: { ...DEFAULT_LOG_OPTIONS, ...input.options, retry: { ...DEFAULT_BACKOFF, ...input.options?.retry } },
    random: input.random,
    link: 'none',
    buffer: [],
    sending: [],
    dropped: 0,
    retries: 0,
    retryMs: 0,
  }),
  on: {
    LOG: { actions: 'append' },
    LINK: { actions: assign({ link: ({ event }) => event.link }) },
  },
  initial: 'idle',
  states: {
    idle: { always: { guard: 'buffered', target: 'collecting' } },
    collecting: {
      always: { guard: 'batchFull', target: 'due' },
      after: { maxBatchAge: 'due' },
      on: { FLUSH: 'due' },
    },
    due: {
      always: [
        {
          guard: { type: 'linkIs', params: 'ngtt' as const },
          target: 'idle',
          actions: [
            {
              type: 'report',
              params: ({ context }) => ({
                type: 'TRANSMIT',
                frame: { type: FrameType.LOGS, tid: 0, payload: context.buffer.slice(0, context.options.maxBatchRecords) },
              }),
            },
            'takeBatch',
            'sent',
          ],
        },
        { guard: { type: 'linkIs', params: 'https' as const }, target: 'posting', actions: 'takeBatch' },
        // Link none: wait here; the buffer keeps filling (bounded) until a LINK event.
      ],
    },
    posting: {
      invoke: {
        src: 'postLogs',
        input: ({ context }) => ({ records: context.sending }),
        onDone: [
          { guard: ({ event }) => httpOutcome(event.output.status) === 'ok', target: 'idle', actions: 'sent' },
          { guard: ({ event }) => httpOutcome(event.output.status) === 'refused', target: 'idle', actions: 'dropSending' },
          { target: 'retryWait', actions: 'requeue' },
        ],
        onError: { target: 'retryWait', actions: 'requeue' },
      },
    },
    retryWait: {
      entry: 'nextRetry',
      always: { guard: { type: 'linkIs', params: 'ngtt' as const }, target: 'due' },
      after: { retry: 'due' },
    },
  },
});
