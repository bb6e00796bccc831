/**
 * Keeps the README's examples identical to the files in examples/ (which the tests run): every
 * `<!-- example: examples/x.ts -->` line is followed by a fenced block holding that file.
 *
 *   npm run docs:examples            rewrites README.md
 *   npm run docs:examples -- --check exits 1 when README.md is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const MARKER = /^<!-- example: (\S+) -->\n```(\w*)\n[\s\S]*?^```$/gm;

/** The README with each marked block replaced by its file's text. */
export function syncExamples(readme: string, read: (path: string) => string = (path) => readFileSync(join(ROOT, path), 'utf8')): string {
  return readme.replace(MARKER, (_, path: string, lang: string) => `<!-- example: ${path} -->\n\`\`\`${lang}\n${read(path).trimEnd()}\n\`\`\``);
}

/** The example files the README includes, in order. */
export function includedExamples(readme: string): string[] {
  return [...readme.matchAll(MARKER)].map((m) => m[1]!);
}

if (process.argv[1] === import.meta.filename) {
  const path = join(ROOT, 'README.md');
  const readme = readFileSync(path, 'utf8');
  const synced = syncExamples(readme);
  if (process.argv.includes('--check')) {
    if (synced !== readme) {
      console.error('README.md: the examples differ from examples/; run `npm run docs:examples`');
      process.exitCode = 1;
    }
  } else if (synced !== readme) {
    writeFileSync(path, synced);
    console.log(`README.md: ${includedExamples(readme).join(', ')} included`);
  }
}
