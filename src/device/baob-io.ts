/**
 * The BAOB sync machine's I/O (machines/baob.ts): the local versions from the device's BAOB
 * store, `POST /v1/device/baobs` for a plan over HTTPS, and the transfers a plan asks for —
 * `GET /v1/device/baobs/<key>` (bytes, version in X-SMOK-BAOB-Version) and
 * `PUT /v1/device/baobs/<key>` (multipart: `file` = bytes, `data` = JSON {version}), each in
 * the HTTP retry machine. Every change to the store is told to `onChange` as it happens.
 */
import { randomBytes } from 'node:crypto';
import { fromPromise } from 'xstate';
import type { ApplyBaobPlanInput, BaobSyncSummary } from '../../machines/baob.js';
import type { HttpResult } from '../../machines/common.js';
import { retrying } from '../../machines/http.js';
import { encode } from '../minijson/index.js';
import type { SqliteBaobStore } from './baob-store.js';
import { type ObservedCall, type RetryOptions, runRetried } from './http-io.js';

export const BAOB_VERSION_HEADER = 'x-smok-baob-version';

export interface DeviceBaobEvent {
  key: string;
  /** The version the device holds now (the one deleted, for `deleted`). */
  version: number;
  change: 'downloaded' | 'deleted' | 'uploaded';
}

/** The PUT body the deployed client sends (requests' `files=`): both parts as files. */
export function baobMultipart(bytes: Uint8Array, version: number): { body: Buffer; contentType: string } {
  const boundary = `ngtt-baob-${randomBytes(12).toString('hex')}`;
  const part = (name: string, type: string) => Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`);
  const body = Buffer.concat([
    part('file', 'application/octet-stream'),
    bytes,
    Buffer.from('\r\n'),
    part('data', 'application/json'),
    Buffer.from(JSON.stringify({ version })),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

const pathOf = (key: string) => `/v1/device/baobs/${encodeURIComponent(key)}`;

export function baobIo(store: SqliteBaobStore, call: ObservedCall, retry: Omit<RetryOptions, 'signal'>, onChange: (event: DeviceBaobEvent) => void) {
  // A 2xx answer becomes {bytes, version}: the retry machine passes bodies on, not headers.
  const download = fromPromise<HttpResult, { key: string }>(async ({ input, signal }) => {
    const answer = await call('GET', pathOf(input.key), undefined, signal, { raw: true });
    if (answer.status < 200 || answer.status >= 300) return answer;
    return { status: answer.status, body: { bytes: answer.body, version: Number(answer.headers[BAOB_VERSION_HEADER] ?? Number.NaN) } };
  });
  const upload = fromPromise<HttpResult, { key: string; body: Buffer; contentType: string }>(({ input, signal }) =>
    call('PUT', pathOf(input.key), input.body, signal, { contentType: input.contentType }),
  );

  return {
    localVersions: fromPromise<Record<string, number>, void>(async () => store.versions()),
    planHttps: retrying(
      fromPromise<HttpResult, { versions: Record<string, number> }>(({ input, signal }) =>
        call('POST', '/v1/device/baobs', encode(Object.entries(input.versions).map(([key, version]) => ({ key, version }))), signal),
      ),
    ),
    /**
     * Deletes, then downloads, then uploads. A transfer the server refuses (it changed in
     * between) does not stop the others; the sync then fails, to be retried with backoff.
     */
    applyPlan: fromPromise<BaobSyncSummary, ApplyBaobPlanInput>(async ({ input, signal }) => {
      const done: BaobSyncSummary = { downloaded: [], uploaded: [], deleted: [] };
      const problems: string[] = [];
      const changed = (event: DeviceBaobEvent, list: string[]) => {
        list.push(event.key);
        onChange(event);
      };
      for (const key of input.delete) {
        const version = input.versions[key];
        // Changed here since the server was asked: the next sync decides.
        if (version !== undefined && store.deleteAt(key, version)) changed({ key, version, change: 'deleted' }, done.deleted);
      }
      for (const key of input.download) {
        const answer = await runRetried(download, { key }, { ...retry, signal });
        if (answer.outcome !== 'ok') {
          problems.push(`GET ${key}: ${answer.error ?? answer.outcome}`);
          continue;
        }
        const { bytes, version } = answer.body as { bytes: unknown; version: number };
        if (!Number.isSafeInteger(version) || version < 0 || !Buffer.isBuffer(bytes)) {
          problems.push(`GET ${key}: the answer has no usable ${BAOB_VERSION_HEADER} header`);
          continue;
        }
        if (store.storeIfNewer(key, version, bytes)) changed({ key, version, change: 'downloaded' }, done.downloaded);
      }
      for (const key of input.upload) {
        const held = store.get(key);
        if (!held) continue; // deleted here meanwhile
        const answer = await runRetried(upload, { key, ...baobMultipart(held.bytes, held.version) }, { ...retry, signal });
        if (answer.outcome !== 'ok') {
          problems.push(`PUT ${key} (version ${held.version}): ${answer.error ?? answer.outcome}${statusOf(answer.body)}`);
          continue;
        }
        store.markSynced(key, held.version);
        changed({ key, version: held.version, change: 'uploaded' }, done.uploaded);
      }
      if (problems.length) throw new Error(`BAOB transfers refused: ${problems.join('; ')}`);
      return done;
    }),
  };
}

const statusOf = (body: unknown) => {
  const text = (body as { status?: unknown } | undefined)?.status;
  return typeof text === 'string' ? ` (${text})` : '';
};
