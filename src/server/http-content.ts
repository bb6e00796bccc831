/**
 * Body formats and replies shared by the HTTPS device API and the admin API, in the deployed
 * clients' conventions (spec §9): bodies in MiniJSON (`application/minijson`) or JSON, by
 * Content-Type; replies in JSON unless the request's Accept names MiniJSON; every error, Fastify's
 * own included (404, 413, 415, a bad body, a malformed request, shutting down), is a 4xx/5xx
 * with a JSON body `{status: "<text>"}` (the original client reads `resp.json()['status']`).
 * Bad bodies and validation failures are 400s, never 500s.
 */
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { decode, encode } from '../minijson/index.js';
import { PayloadError } from '../protocol/index.js';

export const MINIJSON = 'application/minijson';
/** What the original codec's documentation calls it; accepted alike. */
const MINIJSON_TYPES = [MINIJSON, 'application/x-minijson'];

/** JSON has no bigint (MiniJSON does): safe ones become numbers, larger ones strings. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (value instanceof Map) return Object.fromEntries(value);
  return value;
}

export const toJson = (value: unknown): string => JSON.stringify(value, jsonReplacer);

/**
 * MiniJSON only when the request's Accept names it. Deployed clients send MiniJSON bodies with
 * the default `Accept: *\/*` and parse every answer as JSON, so the body's type decides nothing.
 */
export function wantsMiniJson(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? '';
  return MINIJSON_TYPES.some((type) => accept.includes(type));
}

export function sendValue(request: FastifyRequest, reply: FastifyReply, value: unknown): FastifyReply {
  if (wantsMiniJson(request)) return reply.type(MINIJSON).send(Buffer.from(encode(value)));
  return reply.type('application/json; charset=utf-8').send(toJson(value));
}

class BadBody extends Error {
  statusCode = 400;
}

class ShuttingDown extends Error {
  statusCode = 503;
}

/** An error reply: `{status: text}` plus, when the error has one, its `code`. */
export function sendError(request: FastifyRequest, reply: FastifyReply, status: number, text: string, code?: string): FastifyReply {
  return sendValue(request, reply.code(status), code ? { status: text, code } : { status: text });
}

/**
 * Fastify options for the error paths that bypass the error handler: requests Node cannot parse
 * (clientError), URLs Fastify cannot decode (frameworkErrors), and requests arriving while the
 * server closes (its built-in 503 body has no `status`; the hook below answers those instead).
 */
export function errorOptions(): Pick<FastifyServerOptions, 'clientErrorHandler' | 'frameworkErrors' | 'return503OnClosing'> {
  return {
    return503OnClosing: false,
    frameworkErrors: (error, request, reply) => sendError(request, reply, 400, error.message, error.code),
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return void socket.destroy();
      const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify({ status: `${STATUS_CODES[status]}: ${error.message}` });
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    },
  };
}

/** The MiniJSON body parser and the error replies (pass errorOptions() to Fastify as well). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- works for the HTTPS and the plain-HTTP instance alike
export function installContentHandling(app: FastifyInstance<any, any, any, any>, bodyLimit?: number): void {
  app.addContentTypeParser(MINIJSON_TYPES, { parseAs: 'buffer' }, (_request, body, done) => {
    const bytes = body as Buffer;
    if (bytes.length === 0) return done(null, undefined);
    try {
      done(null, decode(bytes));
    } catch (e) {
      done(new BadBody(`body is not valid MiniJSON: ${(e as Error).message}`), undefined);
    }
  });
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw new ShuttingDown('the server is shutting down; try again');
  });
  app.setErrorHandler((error: FastifyError | PayloadError, request, reply) => {
    const status = error instanceof PayloadError ? 400 : (error as FastifyError).statusCode ?? 500;
    const code = (error as FastifyError).code;
    if (status >= 500 && status !== 503) {
      request.log.error({ err: error }, 'request failed');
      return sendError(request, reply, status, 'internal server error');
    }
    request.log.info({ status, reason: error.message, url: request.url }, 'request refused');
    const limit = request.routeOptions?.bodyLimit ?? bodyLimit;
    const text = code === 'FST_ERR_CTP_BODY_TOO_LARGE' && limit ? `request body larger than ${limit} bytes` : error.message;
    return sendError(request, reply, status, text, code);
  });
  app.setNotFoundHandler((request, reply) => sendError(request, reply, 404, `no route ${request.method} ${request.url}`));
}

/** No log line per request (a busy device API would drown the log); refusals and failures are logged by the error handler. */
export const quietRequests = () => new LogController({ disableRequestLogging: true });
