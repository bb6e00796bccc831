/**
 * Certificates and keys for the device's mutual TLS (spec §2): given in memory or as file paths.
 * Material stays in memory; nothing is written to disk (the old client wrote temporary files).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';

/** PEM text, DER/PEM bytes, or the path of a file holding them. */
export type TlsMaterial = string | Buffer | Uint8Array;

export interface DeviceTlsOptions {
  /** CA chain(s) the server certificate must verify against. */
  ca: TlsMaterial | TlsMaterial[];
  /** The device certificate (chain). */
  cert: TlsMaterial;
  key: TlsMaterial;
  /** Name the server certificate must carry (and the SNI); defaults to the host. */
  servername?: string;
}

/** A string holding PEM is material itself; any other string is a path to read. */
export function loadTlsMaterial(material: TlsMaterial): Buffer {
  if (typeof material === 'string') return material.includes('-----BEGIN') ? Buffer.from(material) : readFileSync(material);
  return Buffer.isBuffer(material) ? material : Buffer.from(material.buffer, material.byteOffset, material.byteLength);
}

/**
 * node:tls options for a device connecting to `host`: verification always on, TLS 1.2+.
 * Node checks the server certificate against `servername`, else `host`; an IP address is
 * matched against the certificate's IP SANs and is not sent as SNI (SNI must be a DNS name).
 */
export function deviceTlsOptions(host: string, options: DeviceTlsOptions): ConnectionOptions {
  const cas = Array.isArray(options.ca) ? options.ca : [options.ca];
  return {
    host,
    ca: cas.map(loadTlsMaterial),
    cert: loadTlsMaterial(options.cert),
    key: loadTlsMaterial(options.key),
    servername: options.servername ?? (isIP(host) ? undefined : host),
    minVersion: 'TLSv1.2',
    rejectUnauthorized: true,
  };
}
