/**
 * The supervisor's HTTPS promise actors (spec §9) over DeviceHttpsClient. The machines decide
 * on retries from {status}: an answer is resolved with its status, no answer rejects.
 */
import { fromPromise } from 'xstate';
import type { HttpResult } from '../../machines/common.js';
import type { DeviceConfig } from '../protocol/index.js';
import type { LogRecord, PathpointDeclaration } from '../protocol/index.js';
import { HttpError, type DeviceHttpsClient } from './https-client.js';

/** Runs a request: {status: 200} when it succeeds, the status of an HTTP error answer; rethrows when no answer came. */
export async function statusOf(request: () => Promise<unknown>): Promise<HttpResult> {
  try {
    await request();
    return { status: 200 };
  } catch (error) {
    if (error instanceof HttpError && error.status !== undefined) return { status: error.status };
    throw error;
  }
}

export function httpActors(client: DeviceHttpsClient) {
  return {
    /** The raw poll answer: the order machine parses it (and rejects it when malformed). */
    pollOrders: fromPromise<unknown, void>(() => client.request('POST', '/v1/device/orders')),
    fetchConfig: fromPromise<DeviceConfig, void>(async () => client.getConfiguration()),
    declarePathpoints: fromPromise<HttpResult, { declarations: PathpointDeclaration[] }>(({ input }) =>
      statusOf(() => client.declarePathpoints(input.declarations)),
    ),
    postLogs: fromPromise<HttpResult, { records: LogRecord[] }>(({ input }) => statusOf(() => client.uploadLogs(input.records))),
  };
}
