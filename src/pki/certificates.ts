/**
 * A development / test PKI made in code: a CA, server certificates and device certificates
 * carrying the NGTT extensions (spec §2). The certificates are built with @peculiar/asn1-x509
 * and signed with node:crypto (OpenSSL: DER signatures and PEM keys without conversions).
 * ECDSA P-256 keeps key generation fast enough to make fresh certificates in every test.
 */
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import { createHash, createPrivateKey, generateKeyPair, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
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
  /** More extensions, e.g. a vendor's own (or, in tests, malformed NGTT ones). */
  extensions?: CustomExtension[];
}

/** An extension given by its OID and the DER of its value. */
export interface CustomExtension {
  oid: string;
  /** Default false. */
  critical?: boolean;
  value: Uint8Array;
}

/** CA material as accepted by the issuing functions: PEM strings or the bytes of PEM files. */
export interface CAInput {
  cert: string | Uint8Array;
  key: string | Uint8Array;
}

const OID_COMMON_NAME = '2.5.4.3';
/** Signature algorithms by the signing key's type (ECDSA takes no parameters; RSA takes NULL). */
const SIGNATURE_ALGORITHMS: Record<string, { oid: string; parameters?: ArrayBuffer }> = {
  ec: { oid: '1.2.840.10045.4.3.2' }, // ecdsa-with-SHA256
  rsa: { oid: '1.2.840.113549.1.1.11', parameters: new Uint8Array([0x05, 0x00]).buffer }, // sha256WithRSAEncryption
};

const generateEcKeyPair = promisify(generateKeyPair);

async function newKeyPair(): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  return generateEcKeyPair('ec', { namedCurve: 'P-256' });
}

const pemKey = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }) as string;
const toText = (pem: string | Uint8Array): string => (typeof pem === 'string' ? pem : Buffer.from(pem).toString('utf8'));

function publicKeyInfo(key: KeyObject): SubjectPublicKeyInfo {
  return AsnConvert.parse(key.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo);
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spki: SubjectPublicKeyInfo): Buffer {
  return createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest();
}

function commonName(cn: string): Name {
  return new Name([new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_COMMON_NAME, value: new AttributeValue({ utf8String: cn }) })])]);
}

/** A positive 16-byte serial number with a non-zero first byte (minimal DER INTEGER). */
function serialNumber(): ArrayBuffer {
  const bytes = randomBytes(16);
  bytes[0] = 0x40 | (bytes[0]! & 0x3f);
  return new Uint8Array(bytes).buffer;
}

function validity(o: ValidityOptions, defaultDays: number): Validity {
  const notBefore = o.notBefore ?? new Date(Date.now() - 5 * 60_000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + (o.validDays ?? defaultDays) * 86_400_000);
  return new Validity({ notBefore, notAfter });
}

function extension(extnID: string, critical: boolean, value: object | Uint8Array): Extension {
  const der = value instanceof Uint8Array ? value : AsnConvert.serialize(value);
  return new Extension({ extnID, critical, extnValue: new OctetString(der) });
}

interface Issuer {
  name: Name;
  key: KeyObject;
  /** The issuer's key identifier, for the authority key identifier of what it signs. */
  keyId: Buffer;
}

/** Builds, signs and encodes (PEM) a certificate for `subjectKey`. */
function signCertificate(issuer: Issuer, subject: Name, subjectKey: SubjectPublicKeyInfo, validityPeriod: Validity, extensions: Extension[]): string {
  const algorithm = SIGNATURE_ALGORITHMS[issuer.key.asymmetricKeyType ?? ''];
  if (!algorithm) throw new Error(`CA key of type ${issuer.key.asymmetricKeyType} cannot sign here (EC or RSA only)`);
  const signatureAlgorithm = new AlgorithmIdentifier({ algorithm: algorithm.oid, parameters: algorithm.parameters ?? null });
  const tbsCertificate = new TBSCertificate({
    version: Version.v3,
    serialNumber: serialNumber(),
    signature: signatureAlgorithm,
    issuer: issuer.name,
    validity: validityPeriod,
    subject,
    subjectPublicKeyInfo: subjectKey,
    extensions: new Extensions([
      ...extensions,
      extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdentifier(subjectKey))),
      extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(issuer.keyId) })),
    ]),
  });
  const tbs = Buffer.from(AsnConvert.serialize(tbsCertificate));
  const signatureValue = sign('sha256', tbs, issuer.key); // DER ECDSA-Sig-Value for EC keys
  const der = AsnConvert.serialize(new Certificate({ tbsCertificate, signatureAlgorithm, signatureValue: new Uint8Array(signatureValue).buffer }));
  return new X509Certificate(Buffer.from(der)).toString();
}

export async function createCA(options: CAOptions = {}): Promise<CertificateAndKey> {
  const keys = await newKeyPair();
  const name = commonName(options.commonName ?? 'NGTT development CA');
  const spki = publicKeyInfo(keys.publicKey);
  const cert = signCertificate({ name, key: keys.privateKey, keyId: keyIdentifier(spki) }, name, spki, validity(options, 3650), [
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true, pathLenConstraint: 0 })),
    extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature)),
  ]);
  return { cert, key: pemKey(keys.privateKey) };
}

/** The CA as an issuer: its subject (copied byte for byte), its key and its key identifier. */
function caIssuer(ca: CAInput): Issuer {
  const caCert = AsnConvert.parse(new X509Certificate(toText(ca.cert)).raw, Certificate);
  const tbs = caCert.tbsCertificate;
  const ski = tbs.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
  const keyId = ski ? Buffer.from(AsnConvert.parse(ski.extnValue, SubjectKeyIdentifier).buffer) : keyIdentifier(tbs.subjectPublicKeyInfo);
  return { name: tbs.subject, key: createPrivateKey(toText(ca.key)), keyId };
}

async function issue(ca: CAInput, cn: string, options: ValidityOptions, extensions: Extension[]): Promise<CertificateAndKey> {
  const issuer = caIssuer(ca);
  const keys = await newKeyPair();
  const cert = signCertificate(issuer, commonName(cn), publicKeyInfo(keys.publicKey), validity(options, 825), [
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
    extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyAgreement)),
    ...extensions,
  ]);
  return { cert, key: pemKey(keys.privateKey) };
}

export async function createServerCertificate(ca: CAInput, options: ServerCertificateOptions): Promise<CertificateAndKey> {
  const [first] = options.hosts;
  if (first === undefined) throw new Error('a server certificate needs at least one host name or IP address');
  const names = options.hosts.map((h) => new GeneralName(isIP(h) ? { iPAddress: h } : { dNSName: h }));
  return issue(ca, options.commonName ?? first, options, [
    extension(id_ce_subjectAltName, false, new SubjectAlternativeName(names)),
    extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth])),
  ]);
}

export async function createDeviceCertificate(ca: CAInput, options: DeviceCertificateOptions): Promise<CertificateAndKey> {
  const extensions = [extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_clientAuth]))];
  if (!options.omitDeviceId) {
    if (!options.deviceId) throw new Error('a device certificate needs a non-empty deviceId');
    extensions.push(extension(OID_DEVICE_ID, false, encodeUtf8String(options.deviceId)));
  }
  if (options.environment !== undefined) extensions.push(extension(OID_ENVIRONMENT, false, encodeInteger(options.environment)));
  for (const e of options.extensions ?? []) extensions.push(extension(e.oid, e.critical ?? false, e.value));
  return issue(ca, options.commonName ?? `device ${options.deviceId}`, options, extensions);
}
