/** A small client of the server's admin API (JSON over HTTP), for `ngtt order` and the demo. */
import { UserError } from './common.js';

/** One admin request; a connection failure or an error status becomes a one-line UserError. */
export async function adminRequest(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (process.env.NGTT_ADMIN_TOKEN) headers.authorization = `Bearer ${process.env.NGTT_ADMIN_TOKEN}`;
  let response: Response;
  try {
    response = await fetch(new URL(path, base), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new UserError(`cannot reach the admin API at ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  const text = await response.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = text;
  }
  if (!response.ok) {
    const message = (value as { error?: string })?.error ?? text;
    throw new UserError(`admin API said ${response.status}: ${message}`);
  }
  return value;
}
