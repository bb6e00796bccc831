/**
 * BAOB sync (spec §11): one sync at a time, started after every (re)connect (each LINK that is
 * not `none`) and on demand (SYNC), retried with the shared backoff when it fails.
 *
 *   idle ─(wanted, link not none)─▶ reading ─(local versions)─┬─ngtt──▶ asking ─(BAOB.ANSWER)─┐
 *                                                            └─https─▶ posting ─(2xx)───────┤
 *                                                                                           ▼
 *   idle ◀──(BAOB.SYNCED)── applying: delete, download, upload what the plan says (`applyPlan`)
 *     ▲
 *   failed (FAULT emitted; waits backoffDelay(failures): 1 s, 2 s … 60 s, or a new link) ─▶ idle, wanted again
 *
 * - `localVersions` (provided promise actor): the device's `{key: version}`.
 * - asking: TRANSMIT SYNC_BAOB_REQUEST on BAOB_SYNC_TID (reserved: one request is out at most);
 *   the parent routes the SYNC_BAOB_RESPONSE back as BAOB.ANSWER. No answer within
 *   answerTimeoutMs is a failure; the link going away ends the attempt (the next link syncs).
 * - posting: `planHttps`, the HTTP retry machine around `POST /v1/device/baobs` (machines/http.ts);
 *   a 4xx is a failure.
 * - `applyPlan` (provided promise actor) moves the bytes over HTTPS; it rejects when a transfer
 *   failed or was refused (the server changed in between: the next sync sorts it out).
 * - SYNC {seq} asks for a sync that starts after it; BAOB.SYNCED {seq} names the newest request
 *   a finished sync covers.
 */
import { assign, fromPromise, not, sendParent, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import { type BackoffOptions, type FaultReport, type Link, type LinkEvent, type Random, type TransmitEvent, DEFAULT_BACKOFF, backoffDelay, errorText, withDefaults } from './common.js';
import { type HttpRequestOutput, httpRequestMachine } from './http.js';

/** The tid of SYNC_BAOB_REQUEST: one is outstanding at most (upload uses 1..0x7FFC, the logs' receipt PING 0x7FFD, the keepalive PING 0x7FFF). */
export const BAOB_SYNC_TID = 0x7ffe;
export const DEFAULT_BAOB_ANSWER_TIMEOUT_MS = 60_000;

/** What to do, by key: the server's answer in either transport's words. */
export interface BaobPlan {
  download: string[];
  upload: string[];
  delete: string[];
}

/** `applyPlan`'s input: the plan, and the versions the server was told (a delete applies only to those). */
export type ApplyBaobPlanInput = BaobPlan & { versions: Record<string, number> };

/** What a sync did: the keys that changed, by direction. */
export type BaobSyncSummary = { downloaded: string[]; uploaded: string[]; deleted: string[] };

export interface BaobInput {
  random: Random;
  retry?: Partial<BackoffOptions>;
  link?: Link;
  /** How long to wait for SYNC_BAOB_RESPONSE. Default 60 s. */
  answerTimeoutMs?: number;
}

export type BaobEvent =
  | LinkEvent
  /** Sync now (or right after the one running). */
  | { type: 'SYNC'; seq: number }
  /** The SYNC_BAOB_RESPONSE payload. */
  | { type: 'BAOB.ANSWER'; tid: number; payload: unknown };

export type BaobReport = TransmitEvent | FaultReport | ({ type: 'BAOB.SYNCED'; seq: number } & BaobSyncSummary);

export interface BaobContext {
  random: Random;
  retry: BackoffOptions;
  link: Link;
  answerTimeoutMs: number;
  /** A sync should start (again) as soon as there is a link. */
  wanted: boolean;
  /** The newest SYNC seq asked for, and the one the running sync covers. */
  requested: number;
  covering: number;
  versions: Record<string, number>;
  plan?: BaobPlan;
  failures: number;
  retryMs: number;
  error?: string;
}

const strings = (x: unknown): string[] => (Array.isArray(x) ? x.filter((k): k is string => typeof k === 'string') : []);

/** A SYNC_BAOB_RESPONSE `{download, upload, delete?}` or an HTTPS answer `{should_download, should_upload, should_delete}`. Throws when it is neither. */
export function parseBaobPlan(body: unknown): BaobPlan {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error(`BAOB sync answer is not an object: ${JSON.stringify(body)?.slice(0, 100)}`);
  const b = body as Record<string, unknown>;
  if (Array.isArray(b.should_download) || Array.isArray(b.should_upload)) {
    return { download: strings(b.should_download), upload: strings(b.should_upload), delete: strings(b.should_delete) };
  }
  if (Array.isArray(b.download) || Array.isArray(b.upload)) return { download: strings(b.download), upload: strings(b.upload), delete: strings(b.delete) };
  throw new Error('BAOB sync answer names no download/upload lists');
}

const linkIs = (link: Link) => ({ type: 'linkIs' as const, params: link });

export const baobMachine = setup({
  types: {
    context: {} as BaobContext,
    events: {} as BaobEvent,
    input: {} as BaobInput,
  },
  actors: {
    localVersions: fromPromise<Record<string, number>, void>(async () => {
      throw new Error('baob machine: provide the `localVersions` actor');
    }),
    /** The HTTP retry machine around POST /v1/device/baobs, request {versions}. */
    planHttps: httpRequestMachine,
    applyPlan: fromPromise<BaobSyncSummary, ApplyBaobPlanInput>(async () => {
      throw new Error('baob machine: provide the `applyPlan` actor');
    }),
  },
  actions: {
    report: sendParent((_, params: BaobReport) => params),
    link: assign(({ event }) => {
      const link = (event as LinkEvent).link;
      return { link, wanted: link !== 'none' };
    }),
    fail: assign(({ context }, params: { error: string }) => {
      const failures = context.failures + 1;
      return { failures, error: params.error, retryMs: backoffDelay(failures, context.retry, context.random) };
    }),
  },
  guards: {
    linkIs: ({ context }, link: Link) => context.link === link,
    due: ({ context }) => context.wanted && context.link !== 'none',
    ours: (_, tid: number) => tid === BAOB_SYNC_TID,
    ok: (_, output: HttpRequestOutput) => output.outcome === 'ok',
    cancelled: (_, output: HttpRequestOutput) => output.outcome === 'cancelled',
  },
  delays: {
    answerTimeout: ({ context }) => context.answerTimeoutMs,
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: 'baob',
  context: ({ input }) => ({
    random: input.random,
    retry: withDefaults(DEFAULT_BACKOFF, input.retry),
    link: input.link ?? 'none',
    answerTimeoutMs: input.answerTimeoutMs ?? DEFAULT_BAOB_ANSWER_TIMEOUT_MS,
    wanted: (input.link ?? 'none') !== 'none',
    requested: 0,
    covering: 0,
    versions: {},
    failures: 0,
    retryMs: 0,
  }),
  on: {
    // Every link that comes up (a connect, a reconnect, the HTTPS fallback) syncs.
    LINK: { actions: 'link' },
    SYNC: { actions: assign(({ context, event }) => ({ wanted: true, requested: Math.max(context.requested, event.seq) })) },
  },
  initial: 'idle',
  states: {
    idle: {
      always: { guard: 'due', target: 'reading' },
    },
    reading: {
      entry: assign(({ context }) => ({ wanted: false, covering: context.requested })),
      invoke: {
        src: 'localVersions',
        onDone: [
          { guard: linkIs('ngtt'), target: 'asking', actions: assign({ versions: ({ event }) => event.output }) },
          { guard: linkIs('https'), target: 'posting', actions: assign({ versions: ({ event }) => event.output }) },
          // The link went meanwhile: the next one syncs.
          { target: 'idle' },
        ],
        onError: { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: `reading the local BAOBs failed: ${errorText(event.error)}` }) } },
      },
    },
    asking: {
      entry: { type: 'report', params: ({ context }) => ({ type: 'TRANSMIT', frame: { type: FrameType.SYNC_BAOB_REQUEST, tid: BAOB_SYNC_TID, payload: context.versions } }) },
      // The link went (LINK set `wanted` for the next one): no answer will come on this one.
      always: { guard: not(linkIs('ngtt')), target: 'idle' },
      on: {
        'BAOB.ANSWER': {
          guard: { type: 'ours', params: ({ event }) => event.tid },
          actions: assign(({ event }) => {
            try {
              return { plan: parseBaobPlan(event.payload), error: undefined };
            } catch (error) {
              return { plan: undefined, error: errorText(error) };
            }
          }),
          target: 'answered',
        },
      },
      after: { answerTimeout: { target: 'failed', actions: { type: 'fail', params: ({ context }) => ({ error: `no SYNC_BAOB_RESPONSE within ${context.answerTimeoutMs} ms` }) } } },
    },
    answered: {
      always: [
        { guard: ({ context }) => context.plan !== undefined, target: 'applying' },
        { target: 'failed', actions: { type: 'fail', params: ({ context }) => ({ error: context.error ?? 'unusable SYNC_BAOB_RESPONSE' }) } },
      ],
    },
    posting: {
      invoke: {
        src: 'planHttps',
        input: ({ context }) => ({ request: { versions: context.versions }, random: context.random, retry: context.retry }),
        onDone: [
          {
            guard: { type: 'ok', params: ({ event }) => event.output },
            target: 'answered',
            actions: assign(({ event }) => {
              try {
                return { plan: parseBaobPlan(event.output.body), error: undefined };
              } catch (error) {
                return { plan: undefined, error: `POST /v1/device/baobs: ${errorText(error)}` };
              }
            }),
          },
          { guard: { type: 'cancelled', params: ({ event }) => event.output }, target: 'idle' },
          { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: `POST /v1/device/baobs refused: ${event.output.error ?? `HTTP ${event.output.status}`}` }) } },
        ],
        onError: { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: errorText(event.error) }) } },
      },
    },
    applying: {
      invoke: {
        src: 'applyPlan',
        input: ({ context }) => ({ ...context.plan!, versions: context.versions }),
        onDone: {
          target: 'idle',
          actions: [
            { type: 'report', params: ({ context, event }) => ({ type: 'BAOB.SYNCED', seq: context.covering, ...event.output }) },
            { type: 'report', params: { type: 'RECOVERED', source: 'baob' } },
            assign({ failures: 0, plan: undefined, error: undefined }),
          ],
        },
        onError: { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: errorText(event.error) }) } },
      },
    },
    failed: {
      entry: { type: 'report', params: ({ context }) => ({ type: 'FAULT', source: 'baob', error: `BAOB sync failed, retrying in ${context.retryMs} ms: ${context.error}` }) },
      after: { retry: { target: 'idle', actions: assign({ wanted: true }) } },
      // A new link (a reconnect, say) syncs at once: the failure may have been the old link's.
      on: { LINK: [{ guard: ({ event }) => event.link !== 'none', target: 'idle', actions: 'link' }, { actions: 'link' }] },
    },
  },
});
