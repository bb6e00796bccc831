/**
 * A device's identity from its certificate (spec §2): the DeviceID and Environment extensions,
 * read from the DER (x509.ts). Node's X509Certificate (OpenSSL) checks that the input is a
 * certificate at all and gives its DER. Nothing here generates certificates.
 */
import { X509Certificate } from 'node:crypto';
import { decodeInteger, decodeString } from './der.js';
import { certificateParts, type CertificateExtension } from './x509.js';

/** X.509 extension OIDs of spec §2. */
export const OID_DEVICE_ID = '1.3.6.1.4.1.55338.0.0';
export const OID_ENVIRONMENT = '1.3.6.1.4.1.55338.0.1';

/** Spec §2: 0 production, 1 staging, 2 local development. */
export const Environment = { PRODUCTION: 0, STAGING: 1, LOCAL_DEVELOPMENT: 2 } as const;
export type Environment = (typeof Environment)[keyof typeof Environment];

export interface DeviceIdentity {
  deviceId: string;
  /** null when the certificate has no Environment extension. */
  environment: number | null;
}

/** The certificate is not a device certificate NGTT can use. */
export class IdentityError extends Error {
  override name = 'IdentityError';
}

interface ParsedCertificate {
  subject: string;
  extensions: CertificateExtension[];
}

/** PEM text, or DER (or PEM) bytes; the first certificate of a chain. */
function parseCertificate(cert: string | Uint8Array): ParsedCertificate {
  try {
    const x509 = new X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert.buffer, cert.byteOffset, cert.byteLength));
    return { subject: x509.subject.replaceAll('\n', ', '), extensions: certificateParts(x509.raw).extensions };
  } catch (e) {
    throw new IdentityError(`not an X.509 certificate: ${(e as Error).message}`);
  }
}

/** The value of the extension `oid`; a certificate may carry each extension once (RFC 5280 §4.2). */
function extensionValue(cert: ParsedCertificate, oid: string, name: string): Uint8Array | undefined {
  const found = cert.extensions.filter((e) => e.oid === oid);
  if (found.length > 1) throw new IdentityError(`certificate "${cert.subject}" has ${found.length} ${name} extensions`);
  return found[0]?.value;
}

/** DeviceID and Environment of a device certificate (PEM string, or DER as Buffer/Uint8Array). */
export function readDeviceIdentity(cert: string | Uint8Array): DeviceIdentity {
  const parsed = parseCertificate(cert);
  const idValue = extensionValue(parsed, OID_DEVICE_ID, 'DeviceID');
  if (!idValue) throw new IdentityError(`certificate "${parsed.subject}" has no DeviceID extension (${OID_DEVICE_ID})`);
  let deviceId: string;
  try {
    deviceId = decodeString(idValue);
  } catch (e) {
    throw new IdentityError(`certificate "${parsed.subject}" has an undecodable DeviceID: ${(e as Error).message}`);
  }
  if (deviceId.length === 0) throw new IdentityError(`certificate "${parsed.subject}" has an empty DeviceID`);
  const envValue = extensionValue(parsed, OID_ENVIRONMENT, 'Environment');
  let environment: number | null = null;
  if (envValue) {
    try {
      environment = decodeInteger(envValue);
    } catch (e) {
      throw new IdentityError(`certificate "${parsed.subject}" has an undecodable Environment: ${(e as Error).message}`);
    }
  }
  return { deviceId, environment };
}
