/**
 * A project outside the repository that installs the packed package the way a user would, but
 * offline: its lockfile is made from the repository's (same versions, all already in the npm
 * cache after `npm ci`), so `npm ci --offline` needs no registry. better-sqlite3's native addon
 * is copied from the repository's build instead of being compiled again (1–2 minutes here).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const ROOT = join(import.meta.dirname, '..', '..');

/** The environment without npm's own variables: a nested npm must not act on the repository. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never throws for a non-zero exit (the code is in the result). */
export async function exec(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv()): Promise<Result> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string; message: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? err.message };
  }
}

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

/** Where Node (and npm) finds `name` from the package at lockfile path `from`. */
function resolveIn(packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  let base = from;
  for (;;) {
    const candidate = `${base ? `${base}/` : ''}node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (!base) return undefined;
    const i = base.lastIndexOf('/node_modules/');
    base = i === -1 ? '' : base.slice(0, i);
  }
}

export interface ConsumerOptions {
  /** The packed ngtt tarball. */
  tarball: string;
  /** Other dependencies of the consumer, by name (the repository's versions are used). */
  dependencies: string[];
  devDependencies: string[];
}

/** Writes package.json and package-lock.json of a consumer project into `dir`. */
export async function writeConsumerProject(dir: string, o: ConsumerOptions): Promise<void> {
  const rootLock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const packages = rootLock.packages;
  const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown> & { name: string; version: string; dependencies: Record<string, string> };
  const tarballName = basename(o.tarball);
  await copyFile(o.tarball, join(dir, tarballName));
  const integrity = `sha512-${createHash('sha512').update(await readFile(o.tarball)).digest('base64')}`;
  const versionOf = (name: string) => {
    const entry = packages[`node_modules/${name}`];
    if (!entry?.version) throw new Error(`${name} is not in the repository's lockfile`);
    return entry.version;
  };

  const out: Record<string, LockEntry> = {};
  const add = (path: string, dev: boolean) => {
    if (out[path]) return;
    const { dev: _d, devOptional: _o, peer: _p, ...entry } = packages[path]!;
    out[path] = dev ? { ...entry, dev: true } : entry;
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) {
      const found = resolveIn(packages, path, name);
      if (found) add(found, dev);
      else if (!entry.optionalDependencies?.[name]) throw new Error(`${path} needs ${name}, which the repository's lockfile does not have`);
    }
  };
  for (const name of [...Object.keys(manifest.dependencies), ...o.dependencies]) add(`node_modules/${name}`, false);
  for (const name of o.devDependencies) add(`node_modules/${name}`, true);

  const dependencies = { [manifest.name]: `file:${tarballName}`, ...Object.fromEntries(o.dependencies.map((n) => [n, versionOf(n)])) };
  const devDependencies = Object.fromEntries(o.devDependencies.map((n) => [n, versionOf(n)]));
  const pick = (...keys: string[]) => Object.fromEntries(keys.filter((k) => manifest[k] !== undefined).map((k) => [k, manifest[k]]));
  const lock = {
    name: 'ngtt-consumer',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'ngtt-consumer', dependencies, devDependencies },
      [`node_modules/${manifest.name}`]: {
        version: manifest.version,
        resolved: `file:${tarballName}`,
        integrity,
        ...pick('license', 'dependencies', 'peerDependencies', 'peerDependenciesMeta', 'bin', 'engines'),
      },
      ...out,
    },
  };
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'ngtt-consumer', private: true, type: 'module', dependencies, devDependencies }, null, 2));
  await writeFile(join(dir, 'package-lock.json'), JSON.stringify(lock, null, 2));
}

/** The repository's compiled better-sqlite3 addon, put where the consumer's copy looks for it. */
export async function copyNativeAddon(dir: string): Promise<void> {
  const release = join('node_modules', 'better-sqlite3', 'build', 'Release');
  await mkdir(join(dir, release), { recursive: true });
  await copyFile(join(ROOT, release, 'better_sqlite3.node'), join(dir, release, 'better_sqlite3.node'));
}
