/**
 * One HTTPS request, retried the way spec §9 says. Upload, logs, configuration and
 * declarations all use this machine; only the `request` actor differs.
 *
 *   requesting ──2xx────────────────────────────────────────────▶ done {outcome: 'ok'}
 *              ──4xx (the request itself was wrong: never retried)▶ done {outcome: 'refused'}
 *              ──5xx, or no usable answer──▶ retryWait ──(1 s, 2 s … 60 s, jittered)──▶ requesting
 *
 *   CANCEL (the caller no longer wants it, e.g. the link changed): in retryWait it ends at once
 *   as 'cancelled'; while a request is out, that answer still decides when it is a 2xx or 4xx
 *   (the server acted on it), otherwise the outcome is 'cancelled' and nothing is retried.
 *
 * `request` (provided promise actor) gets `input.request`; it resolves with {status, body} for
 * any HTTP answer and rejects when no usable answer came (no connection, timeout, garbage).
 * The machine's output says how it ended: {outcome, status?, body?, error?, attempts}.
 */
import { type PromiseActorLogic, assign, fromPromise, setup } from 'xstate';
import { type BackoffOptions, type HttpResult, type Random, DEFAULT_BACKOFF, backoffDelay, errorText, httpOutcome, withDefaults } from './common.js';

export type HttpRequestOutcome = 'ok' | 'refused' | 'cancelled';

export interface HttpRequestInput {
  /** Handed to the `request` actor as its input. */
  request?: unknown;
  random: Random;
  retry?: Partial<BackoffOptions>;
}

export interface HttpRequestOutput {
  outcome: HttpRequestOutcome;
  /** The last answer's status, if an answer came. */
  status?: number;
  body?: unknown;
  /** Why the last attempt failed, when it did. */
  error?: string;
  attempts: number;
}

export interface HttpRequestContext {
  request: unknown;
  random: Random;
  retry: BackoffOptions;
  attempts: number;
  retryMs: number;
  cancelled: boolean;
  outcome?: HttpRequestOutcome;
  status?: number;
  body?: unknown;
  error?: string;
}

type Answer = { status: number; body?: unknown };

export const httpRequestMachine = setup({
  types: {
    context: {} as HttpRequestContext,
    events: {} as { type: 'CANCEL' },
    input: {} as HttpRequestInput,
    output: {} as HttpRequestOutput,
  },
  actors: {
    request: fromPromise<HttpResult, unknown>(async () => {
      throw new Error('http machine: provide the `request` actor');
    }),
  },
  actions: {
    answered: assign((_, a: Answer) => ({ status: a.status, body: a.body, error: a.status >= 300 ? `HTTP ${a.status}` : undefined })),
    failed: assign((_, params: { error: unknown }) => ({ status: undefined, body: undefined, error: errorText(params.error) })),
    nextRetry: assign(({ context }) => ({ retryMs: backoffDelay(context.attempts, context.retry, context.random) })),
  },
  guards: {
    ok: (_, a: Answer) => httpOutcome(a.status) === 'ok',
    refused: (_, a: Answer) => httpOutcome(a.status) === 'refused',
    cancelled: ({ context }) => context.cancelled,
  },
  delays: {
    retry: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: 'http',
  context: ({ input }) => ({
    request: input.request,
    random: input.random,
    retry: withDefaults(DEFAULT_BACKOFF, input.retry),
    attempts: 0,
    retryMs: 0,
    cancelled: false,
  }),
  on: { CANCEL: { actions: assign({ cancelled: true }) } },
  initial: 'requesting',
  states: {
    requesting: {
      entry: assign({ attempts: ({ context }) => context.attempts + 1 }),
      invoke: {
        src: 'request',
        input: ({ context }: { context: HttpRequestContext }) => context.request,
        onDone: [
          { guard: { type: 'ok', params: ({ event }) => event.output }, target: 'done', actions: [{ type: 'answered', params: ({ event }) => event.output }, assign({ outcome: 'ok' })] },
          {
            guard: { type: 'refused', params: ({ event }) => event.output },
            target: 'done',
            actions: [{ type: 'answered', params: ({ event }) => event.output }, assign({ outcome: 'refused' })],
          },
          { target: 'retryWait', actions: { type: 'answered', params: ({ event }) => event.output } },
        ],
        onError: { target: 'retryWait', actions: { type: 'failed', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    retryWait: {
      always: { guard: 'cancelled', target: 'done', actions: assign({ outcome: 'cancelled' }) },
      entry: 'nextRetry',
      after: { retry: 'requesting' },
    },
    done: { type: 'final' },
  },
  output: ({ context }: { context: HttpRequestContext }) => ({
    outcome: context.outcome ?? 'cancelled',
    status: context.status,
    body: context.body,
    error: context.error,
    attempts: context.attempts,
  }),
});

/** The retry machine around one kind of request (what the upload, logs and supervisor machines invoke). */
export function retrying<I>(request: PromiseActorLogic<HttpResult, I>) {
  return httpRequestMachine.provide({ actors: { request: request as unknown as PromiseActorLogic<HttpResult, unknown> } });
}
