/**
 * An in-memory stand-in for the device spool as the upload machine sees it: values pushed
 * wait unbatched until `cutBatch` forms a batch of the oldest within the limits.
 */
import { fromPromise } from 'xstate';
import type { PathpointSeries, PathpointValue } from '../../src/protocol/messages.js';
import { type CutBatch, type CutBatchInput, type LoadedBatch, estimateBytes } from '../../machines/upload.js';

export class FakeSpool {
  readonly unbatched: { path: string; value: PathpointValue }[] = [];
  readonly batches = new Map<number, PathpointSeries[]>();
  readonly trace: string[] = [];

  constructor(private nextId = 1) {}

  /** Stores the values; returns the PUSH event that reports them. */
  push(series: PathpointSeries[]) {
    let values = 0;
    for (const s of series) for (const value of s.values) (this.unbatched.push({ path: s.path, value }), values++);
    return { type: 'PUSH' as const, values, bytes: estimateBytes(series) };
  }

  cut(limits: CutBatchInput): CutBatch {
    let count = 0;
    let bytes = 5;
    for (const v of this.unbatched) {
      const cost = estimateBytes([{ path: v.path, values: [v.value] }]) - 5; // without the outer list header
      if (count >= limits.maxValues || (count > 0 && bytes + cost > limits.maxBytes)) break;
      bytes += cost;
      count++;
    }
    if (count === 0) return null;
    const series: PathpointSeries[] = [];
    for (const v of this.unbatched.splice(0, count)) {
      const same = series.find((s) => s.path === v.path);
      if (same) same.values.push(v.value);
      else series.push({ path: v.path, values: [v.value] });
    }
    const id = this.nextId++;
    this.batches.set(id, series);
    this.trace.push(`spool ${id} (${count})`);
    return { id, values: count, bytes };
  }

  readonly cutBatch = fromPromise<CutBatch, CutBatchInput>(async ({ input }) => this.cut(input));
  readonly loadBatch = fromPromise<LoadedBatch, { id: number }>(async ({ input }) => ({ payload: this.batches.get(input.id) ?? [] }));
}
