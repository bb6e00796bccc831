/**
 * A small filesystem of a test's own (tmpfs; needs root, which the test machine has) that can
 * be filled without touching the machine's disks. Mounted under `dir`, unmounted at teardown.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SmallDisk {
  mount?: string;
  /** Why the tests that need it are skipped (false: they run). */
  skip: string | false;
}

export function smallDisk(t: { teardown(fn: () => unknown): void }, dir: string, sizeKiB: number): SmallDisk {
  const mount = join(dir, `tmpfs-${sizeKiB}k`);
  mkdirSync(mount, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', mount], { stdio: 'pipe' });
  } catch (error) {
    return { skip: `cannot mount a tmpfs here (needs root): ${(error as Error).message.split('\n')[0]}` };
  }
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  return { mount, skip: false };
}

/** Fills the disk until not even 64 bytes fit. */
export function fill(mount: string): void {
  let i = 0;
  for (const size of [64 * 1024, 4096, 512, 64]) {
    try {
      for (;;) writeFileSync(join(mount, `filler-${i++}`), Buffer.alloc(size, 1));
    } catch {
      // full at this size: try smaller
    }
  }
}

/** Room again. */
export function unfill(mount: string): void {
  for (const f of readdirSync(mount)) if (f.startsWith('filler-')) unlinkSync(join(mount, f));
}
