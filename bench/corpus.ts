/** Documents that look like real NGTT traffic, shared by the benchmarks. Deterministic. */

function rng(seed: number): () => number {
  // mulberry32: small, fast, reproducible
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A DATA_STREAM payload: `values` values spread over 10 pathpoints of mixed types, one per
 * second from `t0` (ms), with an error entry now and then.
 */
export function pathpointBatch(values = 1000, seed = 1, t0 = 1_760_000_000_000): unknown {
  const r = rng(seed);
  const paths = ['W1', 'W2', 'w3', 'f4', 'f5', 'd6', 'W7', 'f8', 'B9', 'u10'];
  const perPath = Math.ceil(values / paths.length);
  return paths.map((path, p) => ({
    path,
    values: Array.from({ length: perPath }, (_, i) => {
      const ts = t0 + i * 1000 + p;
      if (i % 97 === 13) return [false, ts, 'timeout'];
      if (path[0] === 'f') return [ts, Math.round(r() * 10000) / 100];
      if (path[0] === 'd') return [ts, r() * 1e6];
      if (path[0] === 'w') return [ts, Math.round(r() * 2000) - 1000];
      return [ts, Math.floor(r() * 65536)];
    }),
  }));
}

/** An ORDER payload: sections of writes, reads and waits. */
export function orderList(seed = 2): unknown {
  const r = rng(seed);
  return Array.from({ length: 5 }, (_, s) => ({
    id: `3f6c1d2e-8b7a-4c1e-9d2f-00000000000${s}`,
    disposition: s % 2,
    orders: Array.from({ length: 6 }, (_, i) =>
      i % 3 === 0
        ? { type: 'write', path: `W${i}`, value: Math.floor(r() * 1000), advise: 1, stale_after: 1_760_000_600 }
        : i % 3 === 1
          ? { type: 'read', path: `f${i}`, advise: 0 }
          : { type: 'wait', time: 0.5 },
    ),
  }));
}

/** A LOGS payload: 100 records, `when` in µs from `t0`. */
export function logBatch(seed = 3, t0 = 1_760_000_000_000_000): unknown {
  const r = rng(seed);
  const words = ['modbus', 'timeout', 'reading', 'register', 'slave', 'retry', 'ok', 'sensor', 'value', 'written'];
  return Array.from({ length: 100 }, (_, i) => ({
    service: 'device',
    when: t0 + i * 1537,
    message: Array.from({ length: 4 + Math.floor(r() * 12) }, () => words[Math.floor(r() * words.length)]).join(' '),
    level: [10, 20, 30, 40][i % 4],
    ...(i % 25 === 0 ? { exception_text: 'Error: timeout\n    at read (modbus.ts:42)\n    at poll (device.ts:7)' } : {}),
  }));
}
