/**
 * The README's benchmark tables and bench/results/README.md are what bench/render.ts makes of
 * the committed bench/results/*.json: neither can be edited by hand or left behind a rerun.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { README_FILE, render, spliceBlocks } from '../../bench/render.js';
import { RESULTS_DIR } from '../../bench/lib/common.js';

const rendered = render();

t.test('the README benchmark blocks are the render of the committed results', async (t) => {
  const readme = readFileSync(README_FILE, 'utf8');
  t.ok(Object.keys(rendered.readmeBlocks).length >= 2, 'summary and codec blocks');
  t.equal(spliceBlocks(readme, rendered.readmeBlocks), readme, 'run `npm run bench:render` and commit README.md');
});

t.test('bench/results/README.md and the charts are the render of the committed results', async (t) => {
  t.equal(readFileSync(join(RESULTS_DIR, 'README.md'), 'utf8'), rendered.resultsReadme);
  for (const [file, svg] of Object.entries(rendered.svgs)) t.equal(readFileSync(join(RESULTS_DIR, file), 'utf8'), svg, file);
});

t.test('spliceBlocks replaces between the markers and refuses a README without them', async (t) => {
  const doc = 'a\n<!-- bench:x -->\nold\n<!-- /bench:x -->\nb\n';
  t.equal(spliceBlocks(doc, { x: 'new' }), 'a\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\nb\n');
  t.throws(() => spliceBlocks('no markers', { x: 'new' }), /no <!-- bench:x -->/);
});

t.test('the published throughput results are a full run of distinct batches', async (t) => {
  const tp = JSON.parse(readFileSync(join(RESULTS_DIR, 'throughput.json'), 'utf8'));
  t.notOk(tp.narrowed, 'not a narrowed run');
  t.equal(tp.distinctBatches, true, 'every batch distinct');
  t.ok(tp.storedCheck?.batches > 0, 'the store-growth check ran');
  t.ok(tp.throughput.length >= 2, 'at least two batch sizes');
  for (const row of tp.throughput) t.ok(Object.keys(row.median).length >= 3, `batch ${row.batch}: at least three contenders`);
  t.ok(
    tp.throughput.every((row: { median: Record<string, number> }) => 'SQLite store only' in row.median),
    'the store-only ceiling measured in the same run',
  );
});
