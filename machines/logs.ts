/**
 * Log upload (spec §7). The records wait in the runtime's bounded log buffer (it drops the
 * oldest when full, and counts them), which also says when a batch is due (records or age);
 * this machine asks it for the next batch and decides where it goes.
 *
 * LOGS has no reply, so a batch written to a socket that then breaks could be lost unseen. The
 * machine therefore keeps the batch on its way (`sending`) until the server has proved it took
 * it, and sends exactly that batch again, first, on the next link (NGTT or HTTPS) otherwise.
 * Servers key log batches by their content, so a batch that did arrive is not stored twice.
 *
 * `nextLogs` {flush} (provided) resolves {records} (a batch that is due, oldest first) or
 * {records: [], dueInMs} (records are buffered but not due yet) or {records: []} (none).
 * It is asked again on LOGS (new records were buffered), FLUSH, and after dueInMs.
 *
 *   offline — link none: records wait in the buffer, an unproven batch in `sending`.
 *   ngtt    — asking → TRANSMIT LOGS (tid 0) and right behind it a PING with LOGS_RECEIPT_TID
 *             → awaitingReceipt. The server answers frames in order and echoes that PING only
 *             once the LOGS before it are stored (ours does; any server at least has read them),
 *             so the echo (LOGS.RECEIPT) is the batch's receipt. One batch is out at a time,
 *             which is also the backpressure.
 *   https   — asking → posting (the shared HTTP retry machine): 2xx stored, 4xx dropped
 *             (counted); a LINK change or a failure keeps the batch for the next link.
 */
import { assign, enqueueActions, fromPromise, not, sendParent, sendTo, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import type { LogRecord } from '../src/protocol/messages.js';
import { type BackoffOptions, type FaultReport, type Link, type LinkEvent, type Random, type TransmitEvent, DEFAULT_BACKOFF, backoffDelay, errorText, withDefaults } from './common.js';
import { type HttpRequestOutput, httpRequestMachine } from './http.js';

export interface LogsInput {
  random: Random;
  /** Backoff of HTTPS retries. */
  retry?: Partial<BackoffOptions>;
  /** Where to send from the start. Default none. */
  link?: Link;
}

export interface NextLogs {
  records: LogRecord[];
  /** Records are buffered but not due: ask again after this long. */
  dueInMs?: number;
}

/** A batch is settled: the server proved it stored it (NGTT receipt, HTTPS 2xx) or refused it (HTTPS 4xx). */
export interface LogsSettledReport {
  type: 'LOGS.SETTLED';
  outcome: 'stored' | 'refused';
  records: number;
}

export type LogsReport = TransmitEvent | FaultReport | LogsSettledReport;

/**
 * The tid of the PING sent behind each LOGS frame. One batch is out at a time, so one tid is
 * reserved (upload uses 1..0x7FFC, the BAOB sync 0x7FFE, the keepalive PING 0x7FFF).
 */
export const LOGS_RECEIPT_TID = 0x7ffd;

export type LogsEvent =
  /** New records were buffered. */
  | { type: 'LOGS' }
  | { type: 'FLUSH' }
  | LinkEvent
  /** The server echoed the PING sent behind our LOGS frame: that batch is stored. */
  | { type: 'LOGS.RECEIPT' };

export interface LogsContext {
  random: Random;
  retry: BackoffOptions;
  link: Link;
  /** The batch on its way, until the server proved it stored it; sent again unchanged on the next link otherwise. */
  sending: LogRecord[];
  dirty: boolean;
  flush: boolean;
  /** Whether the ask out now was made with `flush`. */
  flushAsked: boolean;
  dueInMs?: number;
  failures: number;
  retryMs: number;
  sent: number;
  /** Records refused (4xx) by the server. */
  dropped: number;
}

const linkIs = (link: Link) => ({ type: 'linkIs' as const, params: link });
/** `report` from inside enqueueActions (setup() cannot type a reference to its own actions). */
const reporting = (params: LogsReport) => ({ type: 'report', params }) as never;

export const logsMachine = setup({
  types: {
    context: {} as LogsContext,
    events: {} as LogsEvent,
    input: {} as LogsInput,
  },
  actors: {
    /** Take the next batch from the log buffer (see NextLogs). */
    nextLogs: fromPromise<NextLogs, { flush: boolean }>(async () => {
      throw new Error('logs machine: provide the `nextLogs` actor');
    }),
    /** HTTPS: the HTTP retry machine around PUT /v1/device/device_logs (see machines/http.ts `retrying`). */
    postLogs: httpRequestMachine,
  },
  actions: {
    report: sendParent((_, params: LogsReport) => params),
    /** The batch, then the PING whose echo is its receipt. */
    transmit: enqueueActions(({ context, enqueue }) => {
      enqueue(reporting({ type: 'TRANSMIT', frame: { type: FrameType.LOGS, tid: 0, payload: context.sending } }));
      enqueue(reporting({ type: 'TRANSMIT', frame: { type: FrameType.PING, tid: LOGS_RECEIPT_TID } }));
    }),
    link: assign({ link: ({ event }) => (event as LinkEvent).link }),
    noteAnswer: assign(({ context }, answer: NextLogs) => ({
      dueInMs: answer.dueInMs,
      flush: context.flush && !(context.flushAsked && answer.dueInMs === undefined),
      sending: answer.records,
    })),
    sent: enqueueActions(({ context, enqueue }) => {
      enqueue(reporting({ type: 'LOGS.SETTLED', outcome: 'stored', records: context.sending.length }));
      enqueue.assign({ sent: context.sent + context.sending.length, sending: [] });
    }),
    refused: enqueueActions(({ context, enqueue }) => {
      enqueue(reporting({ type: 'LOGS.SETTLED', outcome: 'refused', records: context.sending.length }));
      enqueue.assign({ dropped: context.dropped + context.sending.length, sending: [] });
    }),
    /** Kept for the next link; ask the buffer again there. */
    keep: assign({ dirty: true }),
    cancelPost: sendTo('post', { type: 'CANCEL' }),
    bufferFailed: assign(({ context }) => ({ failures: context.failures + 1, retryMs: backoffDelay(context.failures + 1, context.retry, context.random) })),
  },
  guards: {
    linkIs: ({ context }, link: Link) => context.link === link,
    dirty: ({ context }) => context.dirty,
    pending: ({ context }) => context.dueInMs !== undefined,
    gotRecords: (_, answer: NextLogs) => answer.records.length > 0,
    /** A batch not yet proven stored: it goes first, unchanged. */
    holding: ({ context }) => context.sending.length > 0,
    posted: (_, output: HttpRequestOutput) => output.outcome === 'ok',
    refused: (_, output: HttpRequestOutput) => output.outcome === 'refused',
  },
  delays: {
    due: ({ context }) => context.dueInMs ?? 0,
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: 'logs',
  context: ({ input }) => ({
    random: input.random,
    retry: withDefaults(DEFAULT_BACKOFF, input.retry),
    link: input.link ?? 'none',
    sending: [],
    dirty: true,
    flush: false,
    flushAsked: false,
    failures: 0,
    retryMs: 0,
    sent: 0,
    dropped: 0,
  }),
  on: {
    LOGS: { actions: assign({ dirty: true }) },
    FLUSH: { actions: assign({ dirty: true, flush: true }) },
    LINK: { actions: 'link' },
  },
  initial: 'route',
  states: {
    route: {
      always: [{ guard: linkIs('ngtt'), target: 'ngtt' }, { guard: linkIs('https'), target: 'https' }, { target: 'offline' }],
    },
    offline: {
      always: { guard: not(linkIs('none')), target: 'route' },
    },
    ngtt: {
      // Leaving with a batch unproven keeps it in `sending` for the next link.
      always: { guard: not(linkIs('ngtt')), target: 'route', actions: 'keep' },
      initial: 'start',
      states: {
        start: { always: [{ guard: 'holding', target: 'awaitingReceipt' }, { target: 'asking' }] },
        asking: {
          entry: assign(({ context }) => ({ dirty: false, flushAsked: context.flush })),
          invoke: {
            src: 'nextLogs',
            input: ({ context }) => ({ flush: context.flush }),
            onDone: [
              {
                guard: { type: 'gotRecords', params: ({ event }) => event.output },
                target: 'awaitingReceipt',
                actions: { type: 'noteAnswer', params: ({ event }) => event.output },
              },
              { target: 'idle', actions: { type: 'noteAnswer', params: ({ event }) => event.output } },
            ],
            onError: { target: 'failed', actions: ['bufferFailed', { type: 'report', params: ({ event }) => ({ type: 'FAULT', source: 'logs', error: errorText(event.error) }) }] },
          },
        },
        awaitingReceipt: {
          entry: 'transmit',
          on: { 'LOGS.RECEIPT': { target: 'asking', actions: 'sent' } },
        },
        idle: {
          always: [
            { guard: 'dirty', target: 'asking' },
            { guard: 'pending', target: 'waiting' },
          ],
        },
        waiting: {
          always: { guard: 'dirty', target: 'asking' },
          after: { due: 'asking' },
        },
        failed: { after: { retry: 'asking' } },
      },
    },
    https: {
      initial: 'start',
      states: {
        start: { always: [{ guard: 'holding', target: 'posting' }, { target: 'asking' }] },
        asking: {
          entry: assign(({ context }) => ({ dirty: false, flushAsked: context.flush })),
          always: { guard: not(linkIs('https')), target: '#logs.route' },
          invoke: {
            src: 'nextLogs',
            input: ({ context }) => ({ flush: context.flush }),
            onDone: [
              { guard: { type: 'gotRecords', params: ({ event }) => event.output }, target: 'posting', actions: { type: 'noteAnswer', params: ({ event }) => event.output } },
              { target: 'idle', actions: { type: 'noteAnswer', params: ({ event }) => event.output } },
            ],
            onError: { target: 'failed', actions: ['bufferFailed', { type: 'report', params: ({ event }) => ({ type: 'FAULT', source: 'logs', error: errorText(event.error) }) }] },
          },
        },
        posting: {
          on: { LINK: { actions: ['link', 'cancelPost'] } },
          invoke: {
            id: 'post',
            src: 'postLogs',
            input: ({ context }) => ({ request: { records: context.sending }, random: context.random, retry: context.retry }),
            onDone: [
              { guard: { type: 'posted', params: ({ event }) => event.output }, target: 'asking', actions: 'sent' },
              {
                guard: { type: 'refused', params: ({ event }) => event.output },
                target: 'asking',
                actions: 'refused',
              },
              // Cancelled by a link change: the batch stays in `sending` and goes first on the next link.
              { target: '#logs.route', actions: 'keep' },
            ],
            onError: { target: '#logs.route', actions: 'keep' },
          },
        },
        idle: {
          always: [
            { guard: not(linkIs('https')), target: '#logs.route' },
            { guard: 'dirty', target: 'asking' },
            { guard: 'pending', target: 'waiting' },
          ],
        },
        waiting: {
          always: [
            { guard: not(linkIs('https')), target: '#logs.route' },
            { guard: 'dirty', target: 'asking' },
          ],
          after: { due: 'asking' },
        },
        failed: {
          always: { guard: not(linkIs('https')), target: '#logs.route' },
          after: { retry: 'asking' },
        },
      },
    },
  },
});
