/**
 * Throw-away ECDSA P-256 PKI for tests that need real mutual TLS. Stand-in until src/pki lands
 * (createCA / createServerCertificate / createDeviceCertificate); keep it small.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DEVICE_ID_OID = '1.3.6.1.4.1.55338.0.0';

export interface TestCA {
  /** PEM certificate, to pass as `ca`. */
  cert: string;
  key: string;
  certificate: x509.X509Certificate;
  keys: CryptoKeyPair;
}

export interface TestLeaf {
  cert: string;
  key: string;
}

async function pemKey(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

const newKeys = () => webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
const yesterday = () => new Date(Date.now() - 86_400_000);
const nextYear = () => new Date(Date.now() + 365 * 86_400_000);

export async function createTestCA(name = 'NGTT Test CA'): Promise<TestCA> {
  const keys = await newKeys();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    signingAlgorithm: ALG,
    notBefore: yesterday(),
    notAfter: nextYear(),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: certificate.toString('pem'), key: await pemKey(keys.privateKey), certificate, keys };
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

export async function issueTestCertificate(ca: TestCA, options: LeafOptions): Promise<TestLeaf> {
  const keys = await newKeys();
  const names: x509.JsonGeneralNames = [
    ...(options.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([options.deviceId === undefined ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  if (options.deviceId !== undefined) {
    // UTF8String (tag 0x0c), short form length: enough for test ids.
    const value = Buffer.from(options.deviceId, 'utf8');
    extensions.push(new x509.Extension(DEVICE_ID_OID, false, Buffer.concat([Buffer.from([0x0c, value.length]), value])));
  }
  const certificate = await x509.X509CertificateGenerator.create({
    subject: `CN=${options.commonName}`,
    issuer: ca.certificate.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALG,
    notBefore: yesterday(),
    notAfter: nextYear(),
    extensions,
  });
  return { cert: certificate.toString('pem'), key: await pemKey(keys.privateKey) };
}

/** A CA, a server certificate for localhost/127.0.0.1 and a device certificate, all from that CA. */
export async function createTestPki(deviceId = 'dev-1') {
  const ca = await createTestCA();
  const server = await issueTestCertificate(ca, { commonName: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] });
  const device = await issueTestCertificate(ca, { commonName: deviceId, deviceId });
  return { ca, server, device };
}
