/**
 * The device's HTTPS API client (spec §9): same client certificate as NGTT, bodies in MiniJSON
 * (JSON answers are understood too), one keep-alive connection pool.
 * Errors are HttpError; `retryable` follows the spec: 4xx no, 5xx and no connection yes.
 */
import * as https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { decode, encode } from '../minijson/index.js';
import {
  parseSections,
  type DeviceConfig,
  type LogRecord,
  type ParsedSections,
  type PathpointDeclaration,
  type PathpointSeries,
} from '../protocol/index.js';
import { deviceTlsOptions, type DeviceTlsOptions } from './tls-material.js';
import { readLimited } from '../protocol/read-limited.js';

export const MINIJSON_TYPE = 'application/minijson';
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;
/** Answers larger than this are refused (the NGTT frame limit). */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export interface HttpsClientOptions extends DeviceTlsOptions {
  /** e.g. `https://api.example.com` or `https://127.0.0.1:8443`. */
  baseUrl: string;
  /** Whole request, connect to last byte of the answer. Default 30 s. */
  timeoutMs?: number;
  /** Body bytes are added here (HTTP headers and TLS are not counted), e.g. for a device's status. */
  counters?: { bytesSent: number; bytesReceived: number };
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    message: string,
    /** The HTTP status, or undefined when no answer came (connection, TLS, timeout). */
    readonly status: number | undefined,
    readonly retryable: boolean,
    /** The error body the server sent, decoded, if any. */
    readonly body?: unknown,
    /** Node's error code for a failure without an answer, e.g. ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID. */
    readonly code?: string,
  ) {
    super(message);
  }
}

export class DeviceHttpsClient {
  private readonly agent: https.Agent;
  private readonly base: URL;
  private readonly timeoutMs: number;

  /** Request and answer body bytes so far. */
  readonly counters: { bytesSent: number; bytesReceived: number };

  constructor(options: HttpsClientOptions) {
    this.base = new URL(options.baseUrl);
    if (this.base.protocol !== 'https:') throw new TypeError(`baseUrl must be https, got ${options.baseUrl}`);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
    this.counters = options.counters ?? { bytesSent: 0, bytesReceived: 0 };
    const { host: _host, ...tls } = deviceTlsOptions(this.base.hostname, options);
    this.agent = new https.Agent({ ...tls, keepAlive: true });
  }

  /** POST /v1/device/orders: the waiting orders (they count as delivered at once). */
  async pollOrders(): Promise<ParsedSections> {
    return parseSections(await this.request('POST', '/v1/device/orders'));
  }

  /** POST /v1/device/pathpoints. Takes the series, or their MiniJSON (a spool batch's payload). */
  async uploadPathpoints(data: PathpointSeries[] | Uint8Array): Promise<void> {
    await this.request('POST', '/v1/device/pathpoints', data instanceof Uint8Array ? data : encode(data));
  }

  /** PUT /v1/device/pathpoints. */
  async declarePathpoints(declarations: PathpointDeclaration[]): Promise<void> {
    await this.request('PUT', '/v1/device/pathpoints', encode(declarations));
  }

  /** PUT /v1/device/device_logs. */
  async uploadLogs(records: LogRecord[]): Promise<void> {
    await this.request('PUT', '/v1/device/device_logs', encode(records));
  }

  /** GET /v1/device. */
  async getConfiguration(): Promise<DeviceConfig> {
    const config = await this.request('GET', '/v1/device');
    if (typeof config !== 'object' || config === null || typeof (config as DeviceConfig).device_id !== 'string') {
      throw new HttpError('device configuration without a device_id', 200, false, config);
    }
    return config as DeviceConfig;
  }

  /** Closes the pooled connections. */
  close(): void {
    this.agent.destroy();
  }

  /**
   * Sends a request; resolves with the decoded answer (undefined when empty). A 4xx/5xx answer
   * rejects with HttpError carrying its status and body.
   */
  async request(method: string, path: string, body?: Uint8Array, options: RequestOptions = {}): Promise<unknown> {
    const answer = await this.send(method, path, body, options);
    if (answer.status < 200 || answer.status >= 300) {
      throw new HttpError(`${method} ${path}: HTTP ${answer.status}${statusText(answer.body)}`, answer.status, answer.status >= 500, answer.body);
    }
    return answer.body;
  }

  /**
   * Sends a request; resolves with any HTTP answer, {status, body} (body decoded: MiniJSON,
   * JSON, else text). Rejects with HttpError (no status) when no answer came — connection, TLS,
   * timeout, `signal` aborted — and with HttpError (the status, retryable) when a 2xx body
   * cannot be decoded: a broken answer is treated like a 5xx.
   */
  send(method: string, path: string, body?: Uint8Array, options: RequestOptions = {}): Promise<HttpAnswer> {
    const url = new URL(path, this.base);
    const headers: Record<string, string | number> = { Accept: `${MINIJSON_TYPE}, application/json;q=0.5` };
    if (body) {
      headers['Content-Type'] = options.contentType ?? MINIJSON_TYPE;
      headers['Content-Length'] = body.length;
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new HttpError(`${method} ${path}: aborted`, undefined, false, undefined, 'ABORT_ERR'));
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, headers, agent: this.agent }, (res) => {
        readBody(res).then((bytes) => {
          done();
          this.counters.bytesReceived += bytes.length;
          const status = res.statusCode ?? 0;
          let answer: unknown;
          if (options.raw && status >= 200 && status < 300) {
            resolve({ status, body: bytes, headers: res.headers });
            return;
          }
          try {
            answer = decodeBody(res, bytes);
          } catch (error) {
            if (status >= 200 && status < 300) {
              reject(new HttpError(`${method} ${path}: undecodable answer: ${(error as Error).message}`, status, true));
              return;
            }
            answer = bytes.toString('utf8'); // an error page from a proxy, say
          }
          resolve({ status, body: answer, headers: res.headers });
        }, fail);
      });
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' })), this.timeoutMs);
      const onAbort = () => req.destroy(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }));
      signal?.addEventListener('abort', onAbort, { once: true });
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
      function fail(error: Error & { code?: string }) {
        done();
        reject(error instanceof HttpError ? error : new HttpError(`${method} ${path}: ${error.message}`, undefined, error.code !== 'ABORT_ERR', undefined, error.code));
      }
      req.on('error', fail);
      if (body) this.counters.bytesSent += body.length;
      req.end(body);
    });
  }
}

export interface RequestOptions {
  /** Aborting it ends the request at once (it rejects with HttpError, code ABORT_ERR). */
  signal?: AbortSignal;
  /** The body's Content-Type. Default MiniJSON. */
  contentType?: string;
  /** A 2xx answer's body is handed over as the bytes (a Buffer), not decoded: e.g. a BAOB. */
  raw?: boolean;
}

/** Any HTTP answer: its status, the decoded body (bytes with `raw`), and the headers (lower-case names). */
export interface HttpAnswer {
  status: number;
  body: unknown;
  headers: IncomingHttpHeaders;
}

/** ": <text>" from a `{status: "<text>"}` error body (spec §9), if there is one. */
function statusText(body: unknown): string {
  const text = (body as { status?: unknown } | undefined)?.status;
  return typeof text === 'string' && text ? `: ${text}` : '';
}

function readBody(res: IncomingMessage): Promise<Buffer> {
  return readLimited(res, MAX_RESPONSE_BYTES, () => new HttpError(`answer larger than ${MAX_RESPONSE_BYTES} bytes`, res.statusCode, false));
}

/** A body by its Content-Type: MiniJSON, JSON, else text; undefined when empty. Throws when undecodable. */
function decodeBody(res: IncomingMessage, bytes: Buffer): unknown {
  if (bytes.length === 0) return undefined;
  const type = (res.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === MINIJSON_TYPE) return decode(bytes);
  if (type === 'application/json' || type.endsWith('+json')) return JSON.parse(bytes.toString('utf8'));
  return bytes.toString('utf8');
}
