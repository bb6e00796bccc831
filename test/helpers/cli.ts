/**
 * The `ngtt` command as the tests run it: the TypeScript sources through tsx, so no build is
 * needed between an edit and a test. The compiled command (bin/ngtt.js → dist/) is tested from
 * an installed tarball in test/package/consumer.test.ts.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

/** Node arguments that run `ngtt` from any working directory: spawn(process.execPath, [...NGTT, 'demo', …]). */
export const NGTT = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src', 'cli', 'main.ts')];

export interface RunningNgtt {
  child: ChildProcess;
  /** Everything it printed so far. */
  readonly out: string;
  readonly err: string;
  /** Its exit code. */
  exited: Promise<number | null>;
}

/** `ngtt ARGS` as a child process with its output collected, killed when the test ends. */
export function startNgtt(t: { teardown(fn: () => unknown): void }, args: string[], options: SpawnOptions = {}): RunningNgtt {
  const child = spawn(process.execPath, [...NGTT, ...args], { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  const running = { child, out: '', err: '', exited: new Promise<number | null>((r) => child.on('exit', (code) => r(code))) };
  child.stdout!.on('data', (c) => (running.out += c));
  child.stderr!.on('data', (c) => (running.err += c));
  t.teardown(() => child.kill('SIGKILL'));
  return running;
}
