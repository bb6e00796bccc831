/**
 * Throw-away ECDSA P-256 PKI for tests that need real mutual TLS, in the shape the device tests
 * use; made by src/pki.
 */
import { createCA, createDeviceCertificate, createServerCertificate, type CertificateAndKey } from '../../src/pki/index.js';

export type TestCA = CertificateAndKey;
export type TestLeaf = CertificateAndKey;

export function createTestCA(name = 'NGTT Test CA'): Promise<TestCA> {
  return createCA({ commonName: name });
}

export interface LeafOptions {
  commonName: string;
  /** DNS names for the subjectAltName (server certificates). */
  dns?: string[];
  /** IP addresses for the subjectAltName. */
  ips?: string[];
  /** Device certificate: clientAuth and a DeviceID extension. */
  deviceId?: string;
}

export function issueTestCertificate(ca: TestCA, options: LeafOptions): Promise<TestLeaf> {
  const { commonName } = options;
  if (options.deviceId !== undefined) return createDeviceCertificate(ca, { deviceId: options.deviceId, commonName });
  return createServerCertificate(ca, { hosts: [...(options.dns ?? []), ...(options.ips ?? [])], commonName });
}

/** A CA, a server certificate for localhost/127.0.0.1 and a device certificate, all from that CA. */
export async function createTestPki(deviceId = 'dev-1') {
  const ca = await createTestCA();
  const server = await issueTestCertificate(ca, { commonName: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] });
  const device = await issueTestCertificate(ca, { commonName: deviceId, deviceId });
  return { ca, server, device };
}
