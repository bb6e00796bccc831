/** What the subcommands share: argument parsing that reports mistakes in one line, and exit codes. */
import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake the user can fix (bad option, missing file, port in use): one line, no stack trace. */
export class UserError extends Error {
  override name = 'UserError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export const EXIT_USAGE = 2;

type Parsed<T extends ParseArgsConfig['options']> = ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>>;

export function parse<T extends ParseArgsConfig['options']>(argv: string[], options: T): Parsed<T> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UserError((e as Error).message, EXIT_USAGE);
  }
}

/** Errors that are the user's doing, by name or by system error code. */
const USER_ERROR_NAMES = new Set(['UserError', 'PkiFileError', 'IdentityError', 'PayloadError', 'ServerConfigError']);
const USER_ERROR_CODES = new Set(['ENOENT', 'EACCES', 'EADDRINUSE', 'EADDRNOTAVAIL', 'ECONNREFUSED', 'EISDIR', 'ENOTDIR']);

/** OpenSSL's complaints about key material, in words a user can act on. */
const KEY_ERRORS: Record<string, string> = {
  ERR_OSSL_BAD_DECRYPT: 'the private key is encrypted (or its password is wrong); NGTT reads unencrypted PEM keys: decrypt it with `openssl pkey -in KEY -out KEY.plain` and keep that file mode 0600',
  ERR_OSSL_UNSUPPORTED: 'the private key or certificate is not a PEM file NGTT can read',
  ERR_OSSL_X509_KEY_VALUES_MISMATCH: 'the private key does not belong to the certificate',
};

/** A key or certificate problem as a one-line UserError, or undefined when it is something else. */
export function keyMaterialError(e: unknown): UserError | undefined {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code && KEY_ERRORS[code] ? new UserError(KEY_ERRORS[code]) : undefined;
}

/**
 * Optional peer dependencies: the server needs fastify and @fastify/multipart (and amqplib for --store rabbitmq,
 * pg for --pg-url, prom-client for /metrics), the demo's --inspect needs @statelyai/inspect, the live
 * view's charts mermaid (served to the page, never imported). A device-only install has none of them, so the
 * commands load them lazily, and a missing one is named with the command that installs it
 * (the majors of package.json's peerDependencies).
 */
export const OPTIONAL_PEERS: Readonly<Record<string, string>> = {
  fastify: 'fastify@5',
  amqplib: 'amqplib@2',
  pg: 'pg@8',
  '@statelyai/inspect': '@statelyai/inspect@0.7',
  '@fastify/multipart': '@fastify/multipart@10',
  // /metrics on the admin API; without it the server runs and /metrics answers 501.
  'prom-client': 'prom-client@15',
  mermaid: 'mermaid@11',
};

const HTTP_PEERS = ['fastify', '@fastify/multipart'];

/** A failed import of a missing optional peer as a one-line UserError (exit 2), else undefined. */
export function missingPeerError(e: unknown): UserError | undefined {
  const err = e as NodeJS.ErrnoException | undefined;
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') return undefined;
  // "Cannot find package 'fastify' imported from …"
  const name = /Cannot find package '([^']+)'/.exec(err.message)?.[1];
  if (name === undefined || !(name in OPTIONAL_PEERS)) return undefined;
  // The HTTPS API needs both of its packages: name them together, whichever failed first.
  const names = HTTP_PEERS.includes(name) ? HTTP_PEERS : [name];
  const what = names.length === 1 ? `${name}, an optional peer dependency of ngtt that is` : `${names.join(' and ')}, optional peer dependencies of ngtt that are`;
  return new UserError(`needs ${what} not installed: npm install ${names.map((n) => OPTIONAL_PEERS[n]).join(' ')}`, EXIT_USAGE);
}

/** Runs a command; a user mistake becomes one line on stderr and an exit code, anything else a bug report. */
export async function runCommand(name: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (thrown) {
    const e = keyMaterialError(thrown) ?? missingPeerError(thrown) ?? thrown;
    const err = e as NodeJS.ErrnoException & { exitCode?: number };
    if (USER_ERROR_NAMES.has(err.name) || (err.code && USER_ERROR_CODES.has(err.code))) {
      console.error(`ngtt ${name}: ${err.message}`);
      return typeof err.exitCode === 'number' ? err.exitCode : 1;
    }
    console.error(`ngtt ${name}: internal error:`, err);
    return 70; // EX_SOFTWARE
  }
}

export function integerOption(value: string | undefined, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UserError(`--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(value)}`, EXIT_USAGE);
  return n;
}

/** A PEM file's text; a missing or unreadable file is a user mistake with one clear line. */
export async function readPem(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
