/**
 * The `ngtt` command as the tests run it: the TypeScript sources through tsx, so no build is
 * needed between an edit and a test. The compiled command (bin/ngtt.js → dist/) is tested from
 * an installed tarball in test/package/consumer.test.ts.
 */
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

/** Node arguments that run `ngtt` from any working directory: spawn(process.execPath, [...NGTT, 'demo', …]). */
export const NGTT = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src', 'cli', 'main.ts')];
