#!/usr/bin/env node
// The `ngtt` command: runs the compiled CLI in dist/ (`npm run build`; `npm install` in a checkout
// builds it). Plain JavaScript at run time: no TypeScript loader is needed.
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('ngtt: the compiled CLI (dist/) is missing; run `npm run build` in the ngtt package folder');
  process.exit(1);
}
await import(main.href);
