/**
 * Log upload (spec §7): best effort, nothing is confirmed. The records wait in the runtime's
 * bounded log buffer (it drops the oldest when full, and counts them), which also says when a
 * batch is due (records or age); this machine asks it for the next batch and decides where it
 * goes.
 *
 * `nextLogs` {flush} (provided) resolves {records} (a batch that is due, oldest first) or
 * {records: [], dueInMs} (records are buffered but not due yet) or {records: []} (none).
 * It is asked again on LOGS (new records were buffered), FLUSH, and after dueInMs.
 *
 *   offline — link none: records wait in the buffer.
 *   ngtt    — asking → TRANSMIT LOGS (tid 0) → sending: the next batch waits until the
 *             connection has flushed this one (LOGS.SENT), so at most one LOGS frame is queued
 *             on the socket (backpressure); if the link goes first, the records are put back.
 *   https   — asking → posting (the shared HTTP retry machine): 2xx sent, 4xx dropped (counted),
 *             a LINK change cancels the retries and the records are put back (`putBack`).
 */
import { assign, fromPromise, not, sendParent, sendTo, setup } from 'xstate';
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

export type LogsReport = TransmitEvent | FaultReport;

export type LogsEvent =
  /** New records were buffered. */
  | { type: 'LOGS' }
  | { type: 'FLUSH' }
  | LinkEvent
  /** The connection flushed our LOGS frame. */
  | { type: 'LOGS.SENT' };

export interface LogsContext {
  random: Random;
  retry: BackoffOptions;
  link: Link;
  /** The batch on its way (NGTT: until flushed; HTTPS: until answered). */
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
    /** Records taken but not sent go back in front of the buffer. */
    putBack: (_, _params: { records: LogRecord[] }) => {
      throw new Error('logs machine: provide the `putBack` action');
    },
    link: assign({ link: ({ event }) => (event as LinkEvent).link }),
    noteAnswer: assign(({ context }, answer: NextLogs) => ({
      dueInMs: answer.dueInMs,
      flush: context.flush && !(context.flushAsked && answer.dueInMs === undefined),
      sending: answer.records,
    })),
    sent: assign(({ context }) => ({ sent: context.sent + context.sending.length, sending: [] })),
    cancelPost: sendTo('post', { type: 'CANCEL' }),
    bufferFailed: assign(({ context }) => ({ failures: context.failures + 1, retryMs: backoffDelay(context.failures + 1, context.retry, context.random) })),
  },
  guards: {
    linkIs: ({ context }, link: Link) => context.link === link,
    dirty: ({ context }) => context.dirty,
    pending: ({ context }) => context.dueInMs !== undefined,
    gotRecords: (_, answer: NextLogs) => answer.records.length > 0,
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
      always: { guard: not(linkIs('ngtt')), target: 'route' },
      initial: 'asking',
      states: {
        asking: {
          entry: assign(({ context }) => ({ dirty: false, flushAsked: context.flush })),
          invoke: {
            src: 'nextLogs',
            input: ({ context }) => ({ flush: context.flush }),
            onDone: [
              {
                guard: { type: 'gotRecords', params: ({ event }) => event.output },
                target: 'sending',
                actions: [
                  { type: 'noteAnswer', params: ({ event }) => event.output },
                  { type: 'report', params: ({ event }) => ({ type: 'TRANSMIT', frame: { type: FrameType.LOGS, tid: 0, payload: event.output.records } }) },
                ],
              },
              { target: 'idle', actions: { type: 'noteAnswer', params: ({ event }) => event.output } },
            ],
            onError: { target: 'failed', actions: ['bufferFailed', { type: 'report', params: ({ event }) => ({ type: 'FAULT', source: 'logs', error: errorText(event.error) }) }] },
          },
        },
        sending: {
          on: { 'LOGS.SENT': { target: 'asking', actions: 'sent' } },
          // The link went before the frame was flushed: keep the records for the next link.
          always: {
            guard: not(linkIs('ngtt')),
            target: '#logs.route',
            actions: [{ type: 'putBack', params: ({ context }) => ({ records: context.sending }) }, assign({ sending: [], dirty: true })],
          },
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
      initial: 'asking',
      states: {
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
                actions: assign(({ context }) => ({ dropped: context.dropped + context.sending.length, sending: [] })),
              },
              { target: '#logs.route', actions: [{ type: 'putBack', params: ({ context }) => ({ records: context.sending }) }, assign({ sending: [], dirty: true })] },
            ],
            onError: { target: '#logs.route', actions: [{ type: 'putBack', params: ({ context }) => ({ records: context.sending }) }, assign({ sending: [], dirty: true })] },
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
