/**
 * The upload machine's I/O over the durable spool: batches are cut from, read from, confirmed
 * in and set aside in the spool; the machine only decides when. Batch ids are the spool's.
 */
import { fromPromise } from 'xstate';
import type { HttpResult } from '../../machines/common.js';
import type { CutBatch, CutBatchInput, LoadedBatch } from '../../machines/upload.js';
import type { DeviceHttpsClient } from './https-client.js';
import { statusOf } from './http-io.js';
import type { Spool } from './spool.js';

export interface UploadIoHooks {
  /** `values` values left the spool: confirmed by the server, or set aside. */
  onSettled?(outcome: 'confirmed' | 'rejected', values: number, batchId: number, reason?: string): void;
}

export function uploadIo(spool: Spool, client: DeviceHttpsClient, hooks: UploadIoHooks = {}) {
  const read = (id: number) => {
    const batch = spool.batch(id);
    if (!batch) throw new Error(`batch ${id} is not in the spool`);
    return batch;
  };
  /** Applies confirm/reject and reports how many values it settled. */
  const settle = (outcome: 'confirmed' | 'rejected', id: number, apply: () => boolean, reason?: string) => {
    const before = spool.inFlightValues;
    if (apply()) hooks.onSettled?.(outcome, before - spool.inFlightValues, id, reason);
  };
  return {
    actors: {
      cutBatch: fromPromise<CutBatch, CutBatchInput>(async ({ input }) => {
        const batch = spool.takeBatch({ maxValues: input.maxValues, maxBytes: input.maxBytes });
        return batch ? { id: batch.id, values: batch.valueCount, bytes: batch.payload.length } : null;
      }),
      loadBatch: fromPromise<LoadedBatch, { id: number }>(async ({ input }) => ({ encoded: read(input.id).payload })),
      postBatch: fromPromise<HttpResult, { id: number }>(({ input }) => statusOf(() => client.uploadPathpoints(read(input.id).payload))),
    },
    actions: {
      batchConfirmed: (_: unknown, { id }: { id: number }) => settle('confirmed', id, () => spool.confirm(id)),
      setAside: (_: unknown, { id, reason }: { id: number; reason: string }) => settle('rejected', id, () => spool.reject(id, reason), reason),
    },
  };
}
