/**
 * An in-memory stand-in for the device spool as the upload machine sees it: values pushed wait
 * unbatched until they are due (maxValues, or maxAgeMs on the test's clock, or a flush); formed
 * batches are handed out until settled. Payloads are JSON here (the machine never looks inside).
 */
import { fromPromise } from 'xstate';
import type { PathpointSeries, PathpointValue } from '../../src/protocol/messages.js';
import type { NextBatches, NextBatchesInput, SettledBatch, BatchSettlement, UploadBatch } from '../../machines/upload.js';

export class FakeSpool {
  readonly unbatched: { path: string; value: PathpointValue }[] = [];
  readonly batches = new Map<number, PathpointSeries[]>();
  readonly aside = new Map<number, string>();
  readonly trace: string[] = [];
  /** Make the next n asks (or all, with Infinity) fail, as a broken disk would. */
  failAsks = 0;
  failSettles = 0;
  private oldestAt = 0;

  constructor(
    readonly now: () => number,
    readonly limits = { maxValues: 1000, maxAgeMs: 5000 },
    /** The id the next batch formed gets. */
    public nextId = 1,
  ) {}

  /** Stores the values (the DATA event is the test's to send). */
  push(series: PathpointSeries[]): void {
    if (this.unbatched.length === 0) this.oldestAt = this.now();
    for (const s of series) for (const value of s.values) this.unbatched.push({ path: s.path, value });
  }

  /** A batch the spool already holds (from an earlier run, say). */
  hold(id: number, series: PathpointSeries[]): void {
    this.batches.set(id, series);
  }

  next(input: NextBatchesInput): NextBatches {
    if (this.failAsks > 0) {
      this.failAsks--;
      throw new Error('disk I/O error');
    }
    const out: UploadBatch[] = [];
    for (const [id, series] of [...this.batches].sort((a, b) => a[0] - b[0])) {
      if (out.length >= input.max) break;
      if (!input.exclude.includes(id)) out.push(this.toBatch(id, series));
    }
    while (out.length < input.max && this.due(input.flush)) out.push(this.form());
    const dueInMs = this.unbatched.length > 0 ? Math.max(1, this.oldestAt + this.limits.maxAgeMs - this.now()) : undefined;
    return { batches: out, dueInMs };
  }

  settle(settlements: BatchSettlement[]): SettledBatch[] {
    if (this.failSettles > 0) {
      this.failSettles--;
      throw new Error('database or disk is full');
    }
    return settlements.map((s) => {
      const series = this.batches.get(s.id);
      this.batches.delete(s.id);
      this.trace.push(s.outcome === 'confirmed' ? `confirmed ${s.id}` : `aside ${s.id}: ${s.reason}`);
      if (s.outcome === 'rejected') this.aside.set(s.id, s.reason ?? '');
      return { ...s, values: series ? series.reduce((n, x) => n + x.values.length, 0) : 0 };
    });
  }

  readonly nextBatches = fromPromise<NextBatches, NextBatchesInput>(async ({ input }) => this.next(input));
  readonly settleBatches = fromPromise<SettledBatch[], { settlements: BatchSettlement[] }>(async ({ input }) => this.settle(input.settlements));

  private due(flush: boolean): boolean {
    if (this.unbatched.length === 0) return false;
    return flush || this.unbatched.length >= this.limits.maxValues || this.now() >= this.oldestAt + this.limits.maxAgeMs;
  }

  private form(): UploadBatch {
    const taken = this.unbatched.splice(0, this.limits.maxValues);
    if (this.unbatched.length) this.oldestAt = this.now();
    const series: PathpointSeries[] = [];
    for (const v of taken) {
      const same = series.find((s) => s.path === v.path);
      if (same) same.values.push(v.value);
      else series.push({ path: v.path, values: [v.value] });
    }
    const id = this.nextId++;
    this.batches.set(id, series);
    this.trace.push(`spool ${id} (${taken.length})`);
    return this.toBatch(id, series);
  }

  private toBatch(id: number, series: PathpointSeries[]): UploadBatch {
    return { id, values: series.reduce((n, s) => n + s.values.length, 0), encoded: new TextEncoder().encode(JSON.stringify(series)) };
  }
}

/** The JSON payload of a fake batch. */
export const payloadOf = (encoded: Uint8Array | undefined): unknown => (encoded ? JSON.parse(new TextDecoder().decode(encoded)) : undefined);
