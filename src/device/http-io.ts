/**
 * The HTTPS requests of the machines (spec §9) over DeviceHttpsClient. Each resolves with any
 * HTTP answer ({status, body}) and rejects when no usable answer came; the shared HTTP retry
 * machine (machines/http.ts) decides what to retry. `observe` hears of every outcome, so the
 * runtime can show HTTPS trouble in status().
 */
import { fromPromise } from 'xstate';
import type { HttpResult } from '../../machines/common.js';
import { retrying } from '../../machines/http.js';
import type { PostBatchInput } from '../../machines/upload.js';
import { encode } from '../minijson/index.js';
import type { LogRecord, PathpointDeclaration } from '../protocol/index.js';
import { HttpError, type DeviceHttpsClient } from './https-client.js';

/** Told of each request's outcome: the answer, or the error when none came. */
export type HttpObserver = (what: string, outcome: { status: number; body: unknown } | { error: Error }) => void;

export function httpIo(client: DeviceHttpsClient, observe: HttpObserver = () => {}) {
  const call = async (method: string, path: string, body: Uint8Array | undefined, signal: AbortSignal): Promise<HttpResult> => {
    const what = `${method} ${path}`;
    try {
      const answer = await client.send(method, path, body, { signal });
      observe(what, answer);
      return answer;
    } catch (error) {
      if (!signal.aborted) observe(what, { error: error as Error });
      throw error;
    }
  };
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
  };
}
