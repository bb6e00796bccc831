/**
 * The upload machine's spool actors: it asks the spool what to send next and tells it what
 * the server answered. Batch formation, its limits and the batch ids are the spool's.
 */
import { fromPromise } from 'xstate';
import type { NextBatches, NextBatchesInput, SettledBatch, BatchSettlement } from '../../machines/upload.js';
import type { Spool } from './spool.js';

export function uploadIo(spool: Spool) {
  return {
    nextBatches: fromPromise<NextBatches, NextBatchesInput>(async ({ input }) => spool.nextBatches(input)),
    settleBatches: fromPromise<SettledBatch[], { settlements: BatchSettlement[] }>(async ({ input }) => spool.settle(input.settlements)),
  };
}
