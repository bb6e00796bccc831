/** What the upload benchmarks share: the batches, and keeping a window of uploads in flight. */
import type { PathpointSeries } from '../../src/protocol/index.js';
import { pathpointBatch } from '../corpus.js';
import { now } from './common.js';

/** A batch of `values` values: one pathpoint's series for small batches, the corpus from 10 up. */
export function batchOf(values: number): PathpointSeries[] {
  if (values >= 10) return pathpointBatch(values) as PathpointSeries[];
  return [{ path: 'W1', values: Array.from({ length: values }, (_, i) => [1_760_000_000_000 + i * 1000, 1234 + i] as [number, number]) }];
}

/**
 * Batches of `values` values, every one different from all before it, as a real device sends:
 * each call moves every series on in time (the next values of the same pathpoints, one per
 * second) and changes every value, keeping its type (int, float, string). `next()` rewrites one
 * batch in place, so its result is valid until the next call: encode it before asking again
 * (every upload in the benchmarks encodes synchronously when it starts).
 */
export class DistinctBatches {
  private readonly batch: PathpointSeries[];
  private readonly step: number[];
  /** Batches handed out so far. */
  count = 0;

  constructor(readonly values: number) {
    this.batch = batchOf(values);
    // Timestamps advance by a whole batch's span per call, so series continue without overlap.
    this.step = this.batch.map((s) => Math.max(1, s.values.length) * 1000);
  }

  next(): PathpointSeries[] {
    const k = ++this.count;
    for (let p = 0; p < this.batch.length; p++) {
      const values = this.batch[p].values as unknown[][];
      const dt = this.step[p];
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v[0] === false) {
          v[1] = (v[1] as number) + dt;
          continue;
        }
        v[0] = (v[0] as number) + dt;
        const x = v[1];
        if (typeof x !== 'number') continue;
        // Like the value before: ints stay in their range, readings with two decimals keep two.
        if (Number.isInteger(x)) v[1] = x >= 0 ? (x + 7919 * k) % 65536 : -((-x + 7 * k) % 1000);
        else if (Math.round(x * 100) / 100 === x) v[1] = Math.round((x * 100 + 3719 * k) % 1e6) / 100;
        else v[1] = (x * 1.000123 + 0.37 * k) % 1e6;
      }
    }
    return this.batch;
  }
}

/** Keeps `window` uploads in flight for `seconds`; values per second until the last confirm, and the uploads confirmed. */
export async function keepInFlightCounted(
  upload: () => Promise<void>,
  window: number,
  values: number,
  seconds: number,
): Promise<{ rate: number; completed: number }> {
  let completed = 0;
  let inflight = 0;
  const t0 = now();
  const deadline = t0 + seconds * 1000;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (inflight < window && now() < deadline) {
        inflight++;
        upload().then(() => {
          inflight--;
          completed++;
          if (now() >= deadline && inflight === 0) resolve();
          else pump();
        }, reject);
      }
    };
    pump();
  });
  return { rate: (completed * values) / ((now() - t0) / 1000), completed };
}

/** Keeps `window` uploads in flight for `seconds`; values per second until the last confirm. */
export async function keepInFlight(upload: () => Promise<void>, window: number, values: number, seconds: number): Promise<number> {
  return (await keepInFlightCounted(upload, window, values, seconds)).rate;
}
