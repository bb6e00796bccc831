/**
 * A development PKI kept in a folder, for the CLI and the demo:
 *
 *   <dir>/ca.crt  ca.key  server.crt  server.key  devices/<deviceId>.crt  devices/<deviceId>.key
 *
 * Keys are written with mode 0600. Nothing is overwritten unless `force` is set.
 */
import { constants } from 'node:fs';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createCA,
  createDeviceCertificate,
  createServerCertificate,
  type CertificateAndKey,
  type DeviceCertificateOptions,
} from './certificates.js';

export interface DevPki {
  dir: string;
  ca: CertificateAndKey;
  server: CertificateAndKey;
}

export interface CreateDevPkiOptions {
  force?: boolean;
  /** Names the server certificate is valid for. Default localhost, 127.0.0.1, ::1. */
  hosts?: string[];
}

/** A file the caller asked not to overwrite, or one that is missing: a user mistake, not a bug. */
export class PkiFileError extends Error {
  override name = 'PkiFileError';
}

export const DEFAULT_SERVER_HOSTS = ['localhost', '127.0.0.1', '::1'];

const paths = (dir: string) => ({
  caCert: join(dir, 'ca.crt'),
  caKey: join(dir, 'ca.key'),
  serverCert: join(dir, 'server.crt'),
  serverKey: join(dir, 'server.key'),
  devices: join(dir, 'devices'),
});

/** Device ids become file names; refuse the ones that would escape the folder. */
function deviceFileBase(dir: string, deviceId: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.@:-]*$/.test(deviceId)) {
    throw new PkiFileError(`device id ${JSON.stringify(deviceId)} cannot be used as a file name (letters, digits, _ . @ : - only)`);
  }
  return join(paths(dir).devices, deviceId);
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

/** Writes all files or none: every target is checked before the first is written. */
async function writeAll(files: { path: string; data: string; secret: boolean }[], force: boolean): Promise<void> {
  if (!force) {
    for (const f of files) {
      if (await exists(f.path)) throw new PkiFileError(`${f.path} already exists (use --force to overwrite)`);
    }
  }
  for (const f of files) {
    await writeFile(f.path, f.data, { mode: f.secret ? 0o600 : 0o644 });
    // writeFile's mode applies only to new files; an overwritten key must still end up 0600.
    if (f.secret) await chmod(f.path, 0o600);
  }
}

async function readPem(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PkiFileError(code === 'ENOENT' ? `${path} does not exist (run \`ngtt certs init\` first?)` : `cannot read ${path}: ${(e as Error).message}`);
  }
}

export async function createDevPki(dir: string, options: CreateDevPkiOptions = {}): Promise<DevPki> {
  const p = paths(dir);
  await mkdir(p.devices, { recursive: true });
  const ca = await createCA();
  const server = await createServerCertificate(ca, { hosts: options.hosts ?? DEFAULT_SERVER_HOSTS });
  await writeAll(
    [
      { path: p.caCert, data: ca.cert, secret: false },
      { path: p.caKey, data: ca.key, secret: true },
      { path: p.serverCert, data: server.cert, secret: false },
      { path: p.serverKey, data: server.key, secret: true },
    ],
    options.force ?? false,
  );
  return { dir, ca, server };
}

export async function loadDevPki(dir: string): Promise<DevPki> {
  const p = paths(dir);
  const [caCert, caKey, serverCert, serverKey] = await Promise.all([p.caCert, p.caKey, p.serverCert, p.serverKey].map(readPem));
  return { dir, ca: { cert: caCert, key: caKey }, server: { cert: serverCert, key: serverKey } };
}

export interface DevDeviceOptions extends Omit<DeviceCertificateOptions, 'deviceId'> {
  force?: boolean;
}

/** Issues a device certificate with the folder's CA and writes devices/<id>.crt and .key. */
export async function createDevDevice(dir: string, deviceId: string, options: DevDeviceOptions = {}): Promise<CertificateAndKey & { certPath: string; keyPath: string }> {
  const base = deviceFileBase(dir, deviceId);
  const { ca } = await loadDevPki(dir);
  const { force, ...certOptions } = options;
  const device = await createDeviceCertificate(ca, { ...certOptions, deviceId });
  await mkdir(paths(dir).devices, { recursive: true });
  const certPath = `${base}.crt`;
  const keyPath = `${base}.key`;
  await writeAll(
    [
      { path: certPath, data: device.cert, secret: false },
      { path: keyPath, data: device.key, secret: true },
    ],
    force ?? false,
  );
  return { ...device, certPath, keyPath };
}

/** A device's certificate and key from the folder. */
export async function loadDevDevice(dir: string, deviceId: string): Promise<CertificateAndKey> {
  const base = deviceFileBase(dir, deviceId);
  const [cert, key] = await Promise.all([readPem(`${base}.crt`), readPem(`${base}.key`)]);
  return { cert, key };
}
