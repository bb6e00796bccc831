// Preloaded into a measured process (`node --expose-gc --import ./bench/lib/memory-probe.mjs …`):
// on SIGUSR2 it collects garbage (twice: the first pass may only queue finalizers) and prints
// one line `NGTT-MEMORY {"rss":…,"heapUsed":…,"external":…,"arrayBuffers":…}` on stderr, so a
// benchmark reads the memory after GC from outside. Plain JavaScript: no loader needed.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  process.stderr.write(`NGTT-MEMORY ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, gc: typeof globalThis.gc === 'function' })}\n`);
});
