/**
 * The README shows the code the tests run (examples/, run in consumer.test.ts), and the
 * repository stands on its own: no link or path leads outside it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import { includedExamples, syncExamples } from '../../scripts/readme-examples.js';

const ROOT = join(import.meta.dirname, '..', '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

t.test('every file of examples/ is in the README, verbatim', async (t) => {
  const files = readdirSync(join(ROOT, 'examples')).map((f) => `examples/${f}`).sort();
  t.same([...includedExamples(readme)].sort(), files, 'each example included once');
  t.equal(syncExamples(readme), readme, 'README blocks equal the files (npm run docs:examples)');
  for (const file of files) t.ok(readme.includes(readFileSync(join(ROOT, file), 'utf8').trimEnd()), `${file} verbatim`);
});

t.test('the Embedding section has no code block that is not an example file', async (t) => {
  const section = readme.slice(readme.indexOf('## Embedding the device runtime'), readme.indexOf('\n## ', readme.indexOf('## Embedding the device runtime') + 1));
  const blocks = [...section.matchAll(/^(.*)\n```ts$/gm)];
  t.ok(blocks.length >= 2);
  for (const [, before] of blocks) t.match(before, /^<!-- example: examples\/\S+ -->$/);
});

t.test('the sync replaces a stale block and leaves the rest alone', async (t) => {
  const stale = 'intro\n<!-- example: examples/x.ts -->\n```ts\nold();\n```\ntail\n';
  t.equal(syncExamples(stale, () => 'new();\n'), 'intro\n<!-- example: examples/x.ts -->\n```ts\nnew();\n```\ntail\n');
});

/** Text files of the repository (not dependencies, builds or the big vector files). */
function* textFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (['node_modules', 'dist', '.git', '.tap', 'data'].includes(name) || path === join(ROOT, 'test', 'fixtures')) continue;
    if (statSync(path).isDirectory()) yield* textFiles(path);
    else if (/\.(ts|js|mjs|cjs|md|json|sh)$|^run$|^services$/.test(name) && name !== 'package-lock.json') yield path;
  }
}

t.test('nothing in the repository points outside it', async (t) => {
  const outside: string[] = [];
  const broken: string[] = [];
  let links = 0;
  for (const file of textFiles(ROOT)) {
    const text = readFileSync(file, 'utf8');
    const where = relative(ROOT, file);
    if (/\.\.\/shared\b|\/work\/|NGTT-SPEC\.md/.test(text) && where !== 'test/package/readme.test.ts') outside.push(where);
    if (!file.endsWith('.md')) continue;
    for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue; // http(s): and the like
      links++;
      const path = resolve(dirname(file), target!);
      if (!path.startsWith(ROOT) || !existsSync(path)) broken.push(`${where}: ${target}`);
    }
  }
  t.same(outside, [], 'no mention of ../shared, /work/ or the spec file');
  t.same(broken, [], 'every relative Markdown link leads to a file of the repository');
  t.ok(links > 10, `${links} links checked`);
});
