/**
 * Pathpoint data upload (spec §8): where spooled batches go, how many are unanswered, and their
 * tids. The values, the batches and when a batch is due (count, bytes, age: the batch limits)
 * belong to the spool in the runtime; this machine only asks it for the next batches.
 *
 * `nextBatches` {max, exclude, flush} (provided) resolves
 *   {batches: [{id, values, encoded}…]}: send them. Unconfirmed batches come first, oldest first,
 *     with the content they were formed with (after a reconnect or a restart they go out again
 *     unchanged); then new ones, formed from pending values that are due;
 *   {batches: [], dueInMs}: values are pending but not due yet; ask again then;
 *   {batches: []}: nothing pending.
 * It is asked again on DATA (more values were spooled), FLUSH (everything pending is due), when
 * a window slot frees up, and after dueInMs. Batches unanswered or being settled are excluded.
 *
 * link — LINK {link} from the supervisor (the input gives the first one):
 *   offline — hold.
 *   ngtt    — asking ⇄ idle/waiting: while fewer than `window` DATA_STREAMs are unanswered,
 *             report TRANSMIT {DATA_STREAM, tid} per batch (pipelining). BATCH.ANSWERED
 *             {answers: [{tid, outcome}…]} frees the slots and queues the batches for settling
 *             (answers come in groups: what one read of the socket brought). Leaving ngtt
 *             forgets the unanswered ones: the spool hands them out again on the next link.
 *   https   — asking → posting (the shared HTTP retry machine; one batch at a time): 2xx settles
 *             it confirmed, 4xx rejected. A LINK change cancels the retries, but a request in
 *             flight finishes first, so a batch is never on both transports at once.
 *   failed  — the spool could not hand out batches: FAULT, asked again after a backoff.
 *
 * settle — answered batches, oldest answer first: `settleBatches` (provided) deletes confirmed
 *   ones from the spool and sets refused ones aside, reported as BATCH.SETTLED. If the spool
 *   fails: `faulted` (tag; FAULT reported) retries with backoff until it works (RECOVERED).
 *
 * Tids are per connection, 1..0x7FFC (0x7FFD is the logs' receipt PING's, 0x7FFE the BAOB sync's, 0x7FFF the keepalive PING's). Reports go out with the
 * `report` action (default: sendParent): TRANSMIT, BATCH.SETTLED, FAULT, RECOVERED.
 */
import { and, assign, enqueueActions, fromPromise, not, sendParent, sendTo, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import {
  type BackoffOptions,
  type FaultReport,
  type InFrame,
  type Link,
  type LinkEvent,
  type Random,
  type TransmitEvent,
  DEFAULT_BACKOFF,
  backoffDelay,
  errorText,
  withDefaults,
} from './common.js';
import { type HttpRequestOutput, httpRequestMachine } from './http.js';

export const MAX_DATA_TID = 0x7ffc;

export interface UploadOptions {
  /** DATA_STREAM frames unanswered at once over NGTT. */
  window: number;
  /** Backoff of HTTPS retries and of a failing spool. */
  retry: BackoffOptions;
}

export const DEFAULT_UPLOAD_OPTIONS: UploadOptions = { window: 8, retry: DEFAULT_BACKOFF };

export interface UploadInput {
  random: Random;
  options?: Partial<Omit<UploadOptions, 'retry'>> & { retry?: Partial<BackoffOptions> };
  /** Where to send from the start (a restarted machine continues on the current link). Default none. */
  link?: Link;
}

/** A batch as the spool hands it out: its id, how many values, and the DATA_STREAM payload (MiniJSON). */
export interface UploadBatch {
  id: number;
  values: number;
  encoded: Uint8Array;
}

export interface NextBatchesInput {
  /** Hand out at most this many. */
  max: number;
  /** Batches on the wire or being settled: not these. */
  exclude: number[];
  /** Everything pending counts as due. */
  flush: boolean;
}

export interface NextBatches {
  batches: UploadBatch[];
  /** Values are pending but not due: ask again after this long. */
  dueInMs?: number;
}

export type BatchOutcome = 'confirmed' | 'rejected';
export interface BatchSettlement {
  id: number;
  outcome: BatchOutcome;
  reason?: string;
}
/** A settled batch: `values` left the spool (0 when the spool no longer had the batch). */
export interface SettledBatch extends BatchSettlement {
  values: number;
}

export type UploadReport = TransmitEvent | ({ type: 'BATCH.SETTLED' } & SettledBatch) | FaultReport;

export type UploadEvent =
  /** More values are durably in the spool. */
  | { type: 'DATA' }
  /** Everything pending is due now (e.g. before closing). */
  | { type: 'FLUSH' }
  | LinkEvent
  /** DATA_STREAM_CONFIRM / _REJECT frames, in the order they came. */
  | { type: 'BATCH.ANSWERED'; answers: BatchAnswer[] };

export interface BatchAnswer {
  tid: number;
  outcome: BatchOutcome;
  reason?: string;
}

export interface UploadContext {
  window: number;
  retry: BackoffOptions;
  random: Random;
  link: Link;
  /** DATA_STREAMs sent on the current NGTT connection and not yet answered. */
  inFlight: { id: number; tid: number }[];
  /** The last tid handed out; the next one is searched from here. */
  tidCursor: number;
  /** The batch being posted over HTTPS. */
  posting?: UploadBatch;
  /** Answered batches, waiting for the spool to settle them. */
  settling: BatchSettlement[];
  /** Something changed since the spool was last asked (data, FLUSH, a free slot). */
  dirty: boolean;
  flush: boolean;
  /** Whether the ask out now was made with `flush`. */
  flushAsked: boolean;
  /** From the last answer of the spool. */
  dueInMs?: number;
  /** Failures in a row of the spool: handing out, and settling. */
  spoolFailures: number;
  settleFailures: number;
  retryMs: number;
  settleRetryMs: number;
  confirmed: number;
  rejected: number;
}

/** The DATA_STREAM_CONFIRM / _REJECT frames among `frames`, as answers. */
export function answersOf(frames: InFrame[]): BatchAnswer[] {
  const answers: BatchAnswer[] = [];
  for (const f of frames) {
    if (f.type === FrameType.DATA_STREAM_CONFIRM) answers.push({ tid: f.tid, outcome: 'confirmed' });
    else if (f.type === FrameType.DATA_STREAM_REJECT) {
      const reason = (f.payload as { reason?: unknown } | undefined)?.reason;
      answers.push({ tid: f.tid, outcome: 'rejected', reason: typeof reason === 'string' ? reason : undefined });
    }
  }
  return answers;
}

/** The next tid after `cursor` (wrapping within 1..MAX_DATA_TID) not used by an unanswered batch. */
export function nextTid(cursor: number, inUse: { tid: number }[]): number {
  let tid = cursor;
  do tid = tid >= MAX_DATA_TID ? 1 : tid + 1;
  while (inUse.some((b) => b.tid === tid));
  return tid;
}

/** `report` from inside enqueueActions (setup() cannot type a reference to its own actions). */
const reporting = (params: UploadReport) => ({ type: 'report', params }) as never;

const linkIs = (link: Link) => ({ type: 'linkIs' as const, params: link });
const excluded = (c: UploadContext) => [...c.inFlight.map((b) => b.id), ...c.settling.map((s) => s.id), ...(c.posting ? [c.posting.id] : [])];
const ask = (c: UploadContext, max: number): NextBatchesInput => ({ max, exclude: excluded(c), flush: c.flush });

export const uploadMachine = setup({
  types: {
    context: {} as UploadContext,
    events: {} as UploadEvent,
    input: {} as UploadInput,
  },
  actors: {
    /** Ask the spool for what to send next (see NextBatchesInput); rejects if the spool fails. */
    nextBatches: fromPromise<NextBatches, NextBatchesInput>(async () => {
      throw new Error('upload machine: provide the `nextBatches` actor');
    }),
    /** Confirm / set aside answered batches in the spool; rejects if the spool fails. */
    settleBatches: fromPromise<SettledBatch[], { settlements: BatchSettlement[] }>(async () => {
      throw new Error('upload machine: provide the `settleBatches` actor');
    }),
    /** HTTPS: the HTTP retry machine around POST /v1/device/pathpoints (see machines/http.ts `retrying`). */
    postBatch: httpRequestMachine,
  },
  actions: {
    report: sendParent((_, params: UploadReport) => params),
    link: assign({ link: ({ event }) => (event as LinkEvent).link }),
    /** Note what the spool said; send what it handed out (NGTT). */
    transmit: enqueueActions(({ context, enqueue }, answer: NextBatches) => {
      let cursor = context.tidCursor;
      const inFlight = [...context.inFlight];
      for (const batch of answer.batches) {
        const tid = nextTid(cursor, inFlight);
        cursor = tid;
        inFlight.push({ id: batch.id, tid });
        enqueue(reporting({ type: 'TRANSMIT', frame: { type: FrameType.DATA_STREAM, tid, encoded: batch.encoded } }));
      }
      enqueue.assign({ inFlight, tidCursor: cursor });
    }),
    noteAnswer: assign(({ context }, answer: NextBatches) => ({
      dueInMs: answer.dueInMs,
      // Asked with FLUSH and nothing is pending any more: the FLUSH is done.
      flush: context.flush && !(context.flushAsked && answer.dueInMs === undefined),
    })),
    /**
     * Answers for unanswered DATA_STREAMs: their slots are free, the batches go to settling.
     * Answers for tids not in flight (late, from an old connection, or foreign) are ignored.
     */
    answered: assign(({ context }, answers: BatchAnswer[]) => {
      const byTid = new Map(context.inFlight.map((b) => [b.tid, b]));
      const settling = [...context.settling];
      for (const a of answers) {
        const batch = byTid.get(a.tid);
        if (!batch) continue;
        byTid.delete(a.tid);
        settling.push({ id: batch.id, outcome: a.outcome, reason: a.outcome === 'rejected' ? (a.reason ?? 'rejected') : undefined });
      }
      if (settling.length === context.settling.length) return {};
      return { inFlight: context.inFlight.filter((b) => byTid.has(b.tid)), settling, dirty: true };
    }),
    /** Leaving NGTT: nothing unanswered counts any more (the spool hands those batches out again). */
    forgetInFlight: assign({ inFlight: [] }),
    settled: enqueueActions(({ context, enqueue }, done: SettledBatch[]) => {
      const ids = new Set(done.map((d) => d.id));
      enqueue.assign({
        settling: context.settling.filter((s) => !ids.has(s.id)),
        confirmed: context.confirmed + done.filter((d) => d.outcome === 'confirmed').length,
        rejected: context.rejected + done.filter((d) => d.outcome === 'rejected').length,
        settleFailures: 0,
      });
      for (const d of done) enqueue(reporting({ type: 'BATCH.SETTLED', ...d }));
      if (context.settleFailures > 0) enqueue(reporting({ type: 'RECOVERED', source: 'upload.settle' }));
    }),
    spoolFailed: enqueueActions(({ context, enqueue }, params: { error: unknown }) => {
      const n = context.spoolFailures + 1;
      enqueue.assign({ spoolFailures: n, retryMs: backoffDelay(n, context.retry, context.random) });
      enqueue(reporting({ type: 'FAULT', source: 'upload.spool', error: `spool: ${errorText(params.error)}` }));
    }),
    spoolWorks: enqueueActions(({ context, enqueue }) => {
      if (context.spoolFailures === 0) return;
      enqueue.assign({ spoolFailures: 0 });
      enqueue(reporting({ type: 'RECOVERED', source: 'upload.spool' }));
    }),
    settleFailed: enqueueActions(({ context, enqueue }, params: { error: unknown }) => {
      const n = context.settleFailures + 1;
      enqueue.assign({ settleFailures: n, settleRetryMs: backoffDelay(n, context.retry, context.random) });
      enqueue(reporting({ type: 'FAULT', source: 'upload.settle', error: `spool: ${errorText(params.error)}` }));
    }),
    cancelPost: sendTo('post', { type: 'CANCEL' }),
  },
  guards: {
    linkIs: ({ context }, link: Link) => context.link === link,
    hasRoom: ({ context }) => context.inFlight.length < context.window,
    shouldAsk: ({ context }) => context.dirty && context.inFlight.length < context.window,
    pending: ({ context }) => context.dueInMs !== undefined,
    gotBatch: (_, answer: NextBatches) => answer.batches.length > 0,
    settlementsWaiting: ({ context }) => context.settling.length > 0,
    posted: (_, output: HttpRequestOutput) => output.outcome === 'ok',
    refused: (_, output: HttpRequestOutput) => output.outcome === 'refused',
  },
  delays: {
    due: ({ context }) => context.dueInMs ?? 0,
    retry: ({ context }) => context.retryMs,
    settleRetry: ({ context }) => context.settleRetryMs,
  },
}).createMachine({
  id: 'upload',
  type: 'parallel',
  context: ({ input }) => ({
    window: input.options?.window ?? DEFAULT_UPLOAD_OPTIONS.window,
    retry: withDefaults(DEFAULT_UPLOAD_OPTIONS.retry, input.options?.retry),
    random: input.random,
    link: input.link ?? 'none',
    inFlight: [],
    tidCursor: 0,
    settling: [],
    // Ask at once: the spool may hold batches and values from an earlier run.
    dirty: true,
    flush: false,
    flushAsked: false,
    spoolFailures: 0,
    settleFailures: 0,
    retryMs: 0,
    settleRetryMs: 0,
    confirmed: 0,
    rejected: 0,
  }),
  on: {
    DATA: { actions: assign({ dirty: true }) },
    FLUSH: { actions: assign({ dirty: true, flush: true }) },
  },
  states: {
    link: {
      on: { LINK: { actions: 'link' } },
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
          exit: 'forgetInFlight',
          always: { guard: not(linkIs('ngtt')), target: 'route' },
          on: {
            'BATCH.ANSWERED': { actions: { type: 'answered', params: ({ event }) => event.answers } },
          },
          initial: 'asking',
          states: {
            asking: {
              entry: assign(({ context }) => ({ dirty: false, flushAsked: context.flush })),
              invoke: {
                src: 'nextBatches',
                input: ({ context }) => ask(context, context.window - context.inFlight.length),
                onDone: {
                  target: 'idle',
                  actions: ['spoolWorks', { type: 'noteAnswer', params: ({ event }) => event.output }, { type: 'transmit', params: ({ event }) => event.output }],
                },
                onError: { target: 'failed', actions: { type: 'spoolFailed', params: ({ event }) => ({ error: event.error }) } },
              },
            },
            /** Nothing due, or the window is full: wait for data, a FLUSH, a free slot. */
            idle: {
              always: [
                { guard: 'shouldAsk', target: 'asking' },
                { guard: and(['pending', 'hasRoom']), target: 'waiting' },
              ],
            },
            /** Values are pending: ask again when they are due. */
            waiting: {
              always: { guard: 'shouldAsk', target: 'asking' },
              after: { due: [{ guard: 'hasRoom', target: 'asking' }, { target: 'idle', actions: assign({ dueInMs: undefined }) }] },
            },
            failed: {
              after: { retry: 'asking' },
            },
          },
        },
        https: {
          initial: 'asking',
          states: {
            asking: {
              entry: assign(({ context }) => ({ dirty: false, flushAsked: context.flush })),
              always: { guard: not(linkIs('https')), target: '#upload.link.route' },
              invoke: {
                src: 'nextBatches',
                input: ({ context }) => ask(context, 1),
                onDone: [
                  {
                    guard: { type: 'gotBatch', params: ({ event }) => event.output },
                    target: 'posting',
                    actions: ['spoolWorks', { type: 'noteAnswer', params: ({ event }) => event.output }, assign({ posting: ({ event }) => event.output.batches[0] })],
                  },
                  { target: 'idle', actions: ['spoolWorks', { type: 'noteAnswer', params: ({ event }) => event.output }] },
                ],
                onError: { target: 'failed', actions: { type: 'spoolFailed', params: ({ event }) => ({ error: event.error }) } },
              },
            },
            idle: {
              always: [
                { guard: not(linkIs('https')), target: '#upload.link.route' },
                { guard: 'shouldAsk', target: 'asking' },
                { guard: 'pending', target: 'waiting' },
              ],
            },
            waiting: {
              always: [
                { guard: not(linkIs('https')), target: '#upload.link.route' },
                { guard: 'shouldAsk', target: 'asking' },
              ],
              after: { due: { target: 'asking' } },
            },
            posting: {
              // The link changed: no more retries; an answer already coming still counts.
              on: { LINK: { actions: ['link', 'cancelPost'] } },
              invoke: {
                id: 'post',
                src: 'postBatch',
                input: ({ context }) => ({ request: { id: context.posting!.id, encoded: context.posting!.encoded }, random: context.random, retry: context.retry }),
                onDone: [
                  {
                    guard: { type: 'posted', params: ({ event }) => event.output },
                    target: 'asking',
                    actions: assign(({ context }) => ({ settling: [...context.settling, { id: context.posting!.id, outcome: 'confirmed' as const }], posting: undefined })),
                  },
                  {
                    guard: { type: 'refused', params: ({ event }) => event.output },
                    target: 'asking',
                    actions: assign(({ context, event }) => ({
                      settling: [...context.settling, { id: context.posting!.id, outcome: 'rejected' as const, reason: `HTTP ${event.output.status}` }],
                      posting: undefined,
                    })),
                  },
                  // Cancelled: the batch stays in the spool and goes out on the next link.
                  { target: '#upload.link.route', actions: assign({ posting: undefined, dirty: true }) },
                ],
                onError: {
                  target: '#upload.link.route',
                  actions: [assign({ posting: undefined, dirty: true }), { type: 'report', params: ({ event }) => ({ type: 'FAULT', source: 'upload.https', error: errorText(event.error) }) }],
                },
              },
            },
            failed: {
              always: { guard: not(linkIs('https')), target: '#upload.link.route' },
              after: { retry: 'asking' },
            },
          },
        },
      },
    },
    settle: {
      initial: 'idle',
      states: {
        idle: { always: { guard: 'settlementsWaiting', target: 'settling' } },
        settling: {
          invoke: {
            src: 'settleBatches',
            input: ({ context }) => ({ settlements: context.settling }),
            onDone: { target: 'idle', actions: { type: 'settled', params: ({ event }) => event.output } },
            onError: { target: 'faulted', actions: { type: 'settleFailed', params: ({ event }) => ({ error: event.error }) } },
          },
        },
        faulted: {
          tags: ['faulted'],
          after: { settleRetry: 'settling' },
        },
      },
    },
  },
});

/** What `postBatch`'s request gets: the batch id and its payload. */
export type PostBatchInput = { id: number; encoded: Uint8Array };
