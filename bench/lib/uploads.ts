/** What the upload benchmarks share: the batches, and keeping a window of uploads in flight. */
import type { PathpointSeries } from '../../src/protocol/index.js';
import { pathpointBatch } from '../corpus.js';
import { now } from './common.js';

/** A batch of `values` values: one pathpoint's series for small batches, the corpus from 10 up. */
export function batchOf(values: number): PathpointSeries[] {
  if (values >= 10) return pathpointBatch(values) as PathpointSeries[];
  return [{ path: 'W1', values: Array.from({ length: values }, (_, i) => [1_760_000_000_000 + i * 1000, 1234 + i] as [number, number]) }];
}

/** Keeps `window` uploads in flight for `seconds`; values per second until the last confirm. */
export async function keepInFlight(upload: () => Promise<void>, window: number, values: number, seconds: number): Promise<number> {
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
  return (completed * values) / ((now() - t0) / 1000);
}
