/**
 * A development / test PKI made in code with WebCrypto and @peculiar/x509: a CA, server
 * certificates and device certificates carrying the NGTT extensions. ECDSA P-256 keeps key
 * generation fast enough to make fresh certificates in every test.
 */
import './reflect-metadata.js';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  Extension,
  KeyUsageFlags,
  KeyUsagesExtension,
  PemConverter,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { encodeInteger, encodeUtf8String } from './der.js';
import { OID_DEVICE_ID, OID_ENVIRONMENT } from './identity.js';

/** A certificate and its private key, both PEM (what node's tls takes). */
export interface CertificateAndKey {
  cert: string;
  key: string;
}

export interface ValidityOptions {
  /** Default 825 days for leaf certificates, 3650 for the CA. Ignored when notAfter is given. */
  validDays?: number;
  /** Default five minutes ago (tolerates small clock differences). */
  notBefore?: Date;
  notAfter?: Date;
}

export interface CAOptions extends ValidityOptions {
  commonName?: string;
}

export interface ServerCertificateOptions extends ValidityOptions {
  /** DNS names and IP addresses the server is reached by, e.g. ['localhost', '127.0.0.1']. */
  hosts: string[];
  commonName?: string;
}

export interface DeviceCertificateOptions extends ValidityOptions {
  deviceId: string;
  /** Spec §2: 0 production, 1 staging, 2 local development. Left out of the certificate when undefined. */
  environment?: number;
  commonName?: string;
  /** Test hook: leave the DeviceID extension out (to make a certificate the server must refuse). */
  omitDeviceId?: boolean;
}

const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' };
const crypto = webcrypto;
type CryptoKey = webcrypto.CryptoKey;

async function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function exportKey(key: CryptoKey): Promise<string> {
  return PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function importSigningKey(pem: string | Uint8Array): Promise<CryptoKey> {
  const text = typeof pem === 'string' ? pem : Buffer.from(pem).toString('utf8');
  const [der] = PemConverter.decode(text);
  if (!der) throw new Error('CA key is not a PEM private key');
  return crypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
}

function validity(o: ValidityOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const notBefore = o.notBefore ?? new Date(Date.now() - 5 * 60_000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + (o.validDays ?? defaultDays) * 86_400_000);
  return { notBefore, notAfter };
}

/** Distinguished-name values: escape the characters RFC 4514 reserves. */
const dnValue = (s: string): string => s.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`);

export async function createCA(options: CAOptions = {}): Promise<CertificateAndKey> {
  const keys = await generateKeys();
  const name = `CN=${dnValue(options.commonName ?? 'NGTT development CA')}`;
  const cert = await X509CertificateGenerator.createSelfSigned(
    {
      name,
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      ...validity(options, 3650),
      extensions: [
        new BasicConstraintsExtension(true, 0, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

/** CA material as accepted by the issuing functions: PEM strings or the bytes of PEM files. */
export interface CAInput {
  cert: string | Uint8Array;
  key: string | Uint8Array;
}

async function issue(
  ca: CAInput,
  commonName: string,
  options: ValidityOptions,
  extensions: Extension[],
): Promise<CertificateAndKey> {
  const caCert = new X509Certificate(typeof ca.cert === 'string' ? ca.cert : Buffer.from(ca.cert).toString('utf8'));
  const signingKey = await importSigningKey(ca.key);
  const keys = await generateKeys();
  const cert = await X509CertificateGenerator.create(
    {
      subject: `CN=${dnValue(commonName)}`,
      issuer: caCert.subject,
      publicKey: keys.publicKey,
      signingKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      ...validity(options, 825),
      extensions: [
        new BasicConstraintsExtension(false, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyAgreement, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await AuthorityKeyIdentifierExtension.create(caCert.publicKey, false, crypto),
        ...extensions,
      ],
    },
    crypto,
  );
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

export async function createServerCertificate(ca: CAInput, options: ServerCertificateOptions): Promise<CertificateAndKey> {
  if (options.hosts.length === 0) throw new Error('a server certificate needs at least one host name or IP address');
  const names = options.hosts.map((h) => ({ type: isIP(h) ? ('ip' as const) : ('dns' as const), value: h }));
  return issue(ca, options.commonName ?? options.hosts[0], options, [
    new SubjectAlternativeNameExtension(names, false),
    new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth], false),
  ]);
}

export async function createDeviceCertificate(ca: CAInput, options: DeviceCertificateOptions): Promise<CertificateAndKey> {
  const extensions: Extension[] = [new ExtendedKeyUsageExtension([ExtendedKeyUsage.clientAuth], false)];
  if (!options.omitDeviceId) {
    if (!options.deviceId) throw new Error('a device certificate needs a non-empty deviceId');
    extensions.push(new Extension(OID_DEVICE_ID, false, encodeUtf8String(options.deviceId)));
  }
  if (options.environment !== undefined) extensions.push(new Extension(OID_ENVIRONMENT, false, encodeInteger(options.environment)));
  return issue(ca, options.commonName ?? `device ${options.deviceId}`, options, extensions);
}
