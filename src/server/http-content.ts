/**
 * Body formats shared by the HTTPS device API and the admin API: MiniJSON
 * (`application/minijson`, spec §9) and JSON, chosen by Content-Type on the way in and by
 * Accept on the way out. Bad bodies and validation failures are 400s, never 500s.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decode, encode } from '../minijson/index.js';
import { PayloadError } from '../protocol/index.js';

export const MINIJSON = 'application/minijson';

/** JSON has no bigint (MiniJSON does): safe ones become numbers, larger ones strings. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (value instanceof Map) return Object.fromEntries(value);
  return value;
}

export const toJson = (value: unknown): string => JSON.stringify(value, jsonReplacer);

/** MiniJSON when the client asks for it (Accept), or sent MiniJSON and did not say what it wants back. */
export function wantsMiniJson(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  if (accept) {
    if (accept.includes(MINIJSON)) return true;
    if (!accept.includes('*/*')) return false;
  }
  return (request.headers['content-type'] ?? '').startsWith(MINIJSON);
}

export function sendValue(request: FastifyRequest, reply: FastifyReply, value: unknown): FastifyReply {
  if (wantsMiniJson(request)) return reply.type(MINIJSON).send(Buffer.from(encode(value)));
  return reply.type('application/json; charset=utf-8').send(toJson(value));
}

class BadBody extends Error {
  statusCode = 400;
}

/** The MiniJSON body parser and an error handler that keeps client mistakes 4xx. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- works for the HTTPS and the plain-HTTP instance alike
export function installContentHandling(app: FastifyInstance<any, any, any, any>): void {
  app.addContentTypeParser(MINIJSON, { parseAs: 'buffer' }, (_request, body, done) => {
    const bytes = body as Buffer;
    if (bytes.length === 0) return done(null, undefined);
    try {
      done(null, decode(bytes));
    } catch (e) {
      done(new BadBody(`body is not valid MiniJSON: ${(e as Error).message}`), undefined);
    }
  });
  app.setErrorHandler((error: FastifyError | PayloadError, request, reply) => {
    const status = error instanceof PayloadError ? 400 : (error as FastifyError).statusCode ?? 500;
    if (status >= 500) {
      request.log.error({ err: error }, 'request failed');
      return sendValue(request, reply.code(status), { error: 'internal server error' });
    }
    request.log.info({ status, reason: error.message, url: request.url }, 'request refused');
    return sendValue(request, reply.code(status), { error: error.message });
  });
  app.setNotFoundHandler((request, reply) => sendValue(request, reply.code(404), { error: `no route ${request.method} ${request.url}` }));
}
