/**
 * The HTTPS requests of the machines (spec §9) over DeviceHttpsClient. Each resolves with any
 * HTTP answer ({status, body}) and rejects when no usable answer came; the shared HTTP retry
 * machine (machines/http.ts) decides what to retry. `observe` hears of every outcome, so the
 * runtime can show HTTPS trouble in status().
 */
import { type PromiseActorLogic, createActor, fromPromise, toPromise } from 'xstate';
import type { BackoffOptions, HttpResult, Random } from '../../machines/common.js';
import { type HttpRequestOutput, retrying } from '../../machines/http.js';
import type { PostBatchInput } from '../../machines/upload.js';
import { encode } from '../minijson/index.js';
import type { LogRecord, PathpointDeclaration } from '../protocol/index.js';
import { HttpError, type DeviceHttpsClient, type HttpAnswer, type RequestOptions } from './https-client.js';

/** Told of each request's outcome: the answer, or the error when none came. */
export type HttpObserver = (what: string, outcome: { status: number; body: unknown } | { error: Error }) => void;

/** One request through the client, its outcome told to `observe`. */
export type ObservedCall = (method: string, path: string, body: Uint8Array | undefined, signal: AbortSignal, options?: Omit<RequestOptions, 'signal'>) => Promise<HttpAnswer>;

export function observedCall(client: DeviceHttpsClient, observe: HttpObserver): ObservedCall {
  return async (method, path, body, signal, options) => {
    const what = `${method} ${path}`;
    try {
      const answer = await client.send(method, path, body, { ...options, signal });
      observe(what, answer);
      return answer;
    } catch (error) {
      if (!signal.aborted) observe(what, { error: error as Error });
      throw error;
    }
  };
}

export interface RetryOptions {
  random: Random;
  retry?: Partial<BackoffOptions>;
  /** Aborting stops the retries (and the request out): the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Runs one request in the HTTP retry machine (machines/http.ts) outside a parent machine: for
 * the runtime's own requests (BAOB transfers, message receipts). Resolves with the machine's
 * output: 'ok' (2xx) or 'refused' (4xx); 5xx and no answer are retried until `signal` aborts.
 */
export function runRetried<I>(request: PromiseActorLogic<HttpResult, I>, input: I, options: RetryOptions): Promise<HttpRequestOutput> {
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const actor = createActor(retrying(request), { input: { request: input, random: options.random, retry: options.retry } });
  return new Promise<HttpRequestOutput>((resolve, reject) => {
    const onAbort = () => {
      actor.stop();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    toPromise(actor.start())
      .then(resolve, reject)
      .finally(() => signal?.removeEventListener('abort', onAbort));
  });
}

export function httpIo(client: DeviceHttpsClient, observe: HttpObserver = () => {}) {
  const call = observedCall(client, observe);
  return {
    /** POST /v1/device/orders: the raw answer (the order machines parse it); any failure rejects. */
    pollOrders: fromPromise<unknown, void>(async ({ signal }) => {
      const answer = await call('POST', '/v1/device/orders', undefined, signal);
      if (answer.status < 200 || answer.status >= 300) throw new HttpError(`POST /v1/device/orders: HTTP ${answer.status}`, answer.status, answer.status >= 500, answer.body);
      return answer.body;
    }),
    /** GET /v1/device, retried; a success without a device_id counts as no answer (retried). */
    fetchConfig: retrying(
      fromPromise<HttpResult, void>(async ({ signal }) => {
        const answer = await call('GET', '/v1/device', undefined, signal);
        const config = answer.body as { device_id?: unknown } | undefined;
        if (answer.status >= 200 && answer.status < 300 && typeof config?.device_id !== 'string') {
          throw new Error('GET /v1/device: the answer is not a device configuration (no device_id)');
        }
        return answer;
      }),
    ),
    declarePathpoints: retrying(
      fromPromise<HttpResult, { declarations: PathpointDeclaration[] }>(({ input, signal }) => call('PUT', '/v1/device/pathpoints', encode(input.declarations), signal)),
    ),
    postLogs: retrying(fromPromise<HttpResult, { records: LogRecord[] }>(({ input, signal }) => call('PUT', '/v1/device/device_logs', encode(input.records), signal))),
    postBatch: retrying(fromPromise<HttpResult, PostBatchInput>(({ input, signal }) => call('POST', '/v1/device/pathpoints', input.encoded, signal))),
    /** POST /v1/device/orders/message/<uuid>: the device received the message order (one attempt; run it with runRetried). */
    messageReceipt: fromPromise<HttpResult, { uuid: string }>(({ input, signal }) => call('POST', `/v1/device/orders/message/${encodeURIComponent(input.uuid)}`, undefined, signal)),
  };
}
