import './reflect-metadata.js';
import { X509Certificate } from '@peculiar/x509';
import { decodeInteger, decodeString } from './der.js';

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

/** Parses a PEM string or DER bytes; IdentityError when it is not a certificate. */
export function parseCertificate(cert: string | Uint8Array): X509Certificate {
  try {
    return new X509Certificate(typeof cert === 'string' ? cert : toArrayBuffer(cert));
  } catch (e) {
    throw new IdentityError(`not an X.509 certificate: ${(e as Error).message}`);
  }
}

/** DeviceID and Environment of a device certificate (PEM string, or DER as Buffer/Uint8Array). */
export function readDeviceIdentity(cert: string | Uint8Array): DeviceIdentity {
  const x509 = parseCertificate(cert);
  const idExt = x509.getExtension(OID_DEVICE_ID);
  if (!idExt) throw new IdentityError(`certificate "${x509.subject}" has no DeviceID extension (${OID_DEVICE_ID})`);
  let deviceId: string;
  try {
    deviceId = decodeString(new Uint8Array(idExt.value));
  } catch (e) {
    throw new IdentityError(`certificate "${x509.subject}" has an undecodable DeviceID: ${(e as Error).message}`);
  }
  if (deviceId.length === 0) throw new IdentityError(`certificate "${x509.subject}" has an empty DeviceID`);
  const envExt = x509.getExtension(OID_ENVIRONMENT);
  let environment: number | null = null;
  if (envExt) {
    try {
      environment = decodeInteger(new Uint8Array(envExt.value));
    } catch (e) {
      throw new IdentityError(`certificate "${x509.subject}" has an undecodable Environment: ${(e as Error).message}`);
    }
  }
  return { deviceId, environment };
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
