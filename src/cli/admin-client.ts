/** A small client of the server's admin API (JSON over HTTP), for `ngtt order`, `ngtt baob` and the demo. */
import { UserError } from './common.js';

/** The option and variable every admin command takes, for their --help. */
export const ADMIN_OPTIONS_HELP = `Options:
  --admin URL   the admin API (default $NGTT_ADMIN_URL or http://127.0.0.1:8444)
Environment: NGTT_ADMIN_TOKEN is sent as a bearer token when set.`;

/** The admin API's address: --admin, else $NGTT_ADMIN_URL, else the local default. */
export const adminBase = (option: string | undefined): string => option ?? process.env.NGTT_ADMIN_URL ?? 'http://127.0.0.1:8444';

export interface AdminBody {
  bytes: Uint8Array;
  contentType: string;
}

/**
 * One admin request with a raw body and answer (BAOB values); a connection failure or an error
 * status becomes a one-line UserError with the server's `status` text.
 */
export async function adminRequestRaw(base: string, method: string, path: string, body?: AdminBody, accept = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = { accept };
  if (body) headers['content-type'] = body.contentType;
  if (process.env.NGTT_ADMIN_TOKEN) headers.authorization = `Bearer ${process.env.NGTT_ADMIN_TOKEN}`;
  let response: Response;
  try {
    response = await fetch(new URL(path, base), { method, headers, body: body?.bytes });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new UserError(`cannot reach the admin API at ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try {
      const value = JSON.parse(text) as { status?: string; error?: string };
      message = value?.status ?? value?.error ?? text;
    } catch {
      // not JSON: the text itself
    }
    throw new UserError(`admin API said ${response.status}: ${message}`);
  }
  return response;
}

/** One admin request with a JSON body and answer. */
export async function adminRequest(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const encoded = body === undefined ? undefined : { bytes: new TextEncoder().encode(JSON.stringify(body)), contentType: 'application/json' };
  const text = await (await adminRequestRaw(base, method, path, encoded)).text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
