/**
 * A development / test PKI made in code: a CA, server certificates and device certificates
 * carrying the NGTT extensions (spec §2). The certificates are DER built with asn1js (RFC 5280
 * §4.1) and signed with node:crypto (OpenSSL: DER signatures and PEM keys, no conversions).
 * ECDSA P-256 keeps key generation fast enough to make fresh certificates in every test.
 */
import {
  BitString,
  Boolean as AsnBoolean,
  Constructed,
  fromBER,
  GeneralizedTime,
  Integer,
  Null,
  ObjectIdentifier,
  OctetString,
  Primitive,
  Sequence,
  Set as AsnSet,
  UTCTime,
  Utf8String,
} from 'asn1js';
import { createHash, createPrivateKey, generateKeyPair, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import { encodeInteger, encodeUtf8String } from './der.js';
import { OID_DEVICE_ID, OID_ENVIRONMENT } from './identity.js';
import { certificateParts } from './x509.js';

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

const OID = {
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
};
/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
const KeyUsage = { digitalSignature: 0, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 };
/** Signature algorithms by the signing key's type (ECDSA takes no parameters; RSA takes NULL). */
const SIGNATURE_ALGORITHMS: Record<string, () => Sequence> = {
  ec: () => new Sequence({ value: [oid('1.2.840.10045.4.3.2')] }), // ecdsa-with-SHA256
  rsa: () => new Sequence({ value: [oid('1.2.840.113549.1.1.11'), new Null()] }), // sha256WithRSAEncryption
};

type Block = ReturnType<typeof fromBER>['result'];
const oid = (value: string) => new ObjectIdentifier({ value });
const encode = (block: { toBER(): ArrayBuffer }) => new Uint8Array(block.toBER());
const context = (tag: number) => ({ tagClass: 3, tagNumber: tag });
const toText = (pem: string | Uint8Array): string => (typeof pem === 'string' ? pem : Buffer.from(pem).toString('utf8'));
const pemKey = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }) as string;
const newKeyPair = () => promisify(generateKeyPair)('ec', { namedCurve: 'P-256' });

function parse(der: Uint8Array): Block {
  const { offset, result } = fromBER(der);
  if (offset === -1) throw new Error(`malformed DER: ${result.error}`);
  return result;
}

function commonName(cn: string): Sequence {
  return new Sequence({ value: [new AsnSet({ value: [new Sequence({ value: [oid(OID.commonName), new Utf8String({ value: cn })] })] })] });
}

/** UTCTime up to 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), whole seconds. */
function time(date: Date): UTCTime | GeneralizedTime {
  const valueDate = new Date(Math.floor(date.getTime() / 1000) * 1000);
  return valueDate.getUTCFullYear() < 2050 ? new UTCTime({ valueDate }) : new GeneralizedTime({ valueDate });
}

function validity(o: ValidityOptions, defaultDays: number): Sequence {
  const notBefore = o.notBefore ?? new Date(Date.now() - 5 * 60_000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + (o.validDays ?? defaultDays) * 86_400_000);
  return new Sequence({ value: [time(notBefore), time(notAfter)] });
}

/** A DER named-bit list: the bits set, trailing zero bits left out. */
function namedBits(bits: number[]): BitString {
  const last = Math.max(...bits);
  const bytes = new Uint8Array((last >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return new BitString({ valueHex: bytes, unusedBits: 7 - (last & 7) });
}

/** A positive 16-byte serial number with a non-zero first byte (minimal DER INTEGER). */
function serialNumber(): Integer {
  const bytes = randomBytes(16);
  bytes[0] = 0x40 | (bytes[0]! & 0x3f);
  return new Integer({ valueHex: new Uint8Array(bytes) });
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spki: Block): Buffer {
  const key = spki instanceof Sequence ? spki.valueBlock.value[1] : undefined;
  if (!(key instanceof BitString)) throw new Error('not a SubjectPublicKeyInfo');
  return createHash('sha1').update(key.valueBlock.valueHexView).digest();
}

/** IPv4 or IPv6 text as the 4 or 16 bytes of an iPAddress general name. */
function ipBytes(ip: string): Uint8Array {
  if (isIP(ip) === 4) return Uint8Array.from(ip.split('.').map(Number));
  let text = ip.replace(/%.*$/, ''); // a zone id is not part of the address
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[2 * i] = n >> 8;
    bytes[2 * i + 1] = n & 0xff;
  });
  return bytes;
}

function extension(id: string, critical: boolean, value: Uint8Array | { toBER(): ArrayBuffer }): Sequence {
  const der = value instanceof Uint8Array ? value : encode(value);
  return new Sequence({ value: [oid(id), ...(critical ? [new AsnBoolean({ value: true })] : []), new OctetString({ valueHex: der })] });
}

interface Issuer {
  /** The issuer's Name: for a CA read from its certificate, re-encoded byte for byte. */
  name: Block;
  key: KeyObject;
  /** The issuer's key identifier, for the authority key identifier of what it signs. */
  keyId: Uint8Array;
}

/** Builds, signs and encodes (PEM) a v3 certificate for `subjectKey`. */
function signCertificate(issuer: Issuer, subject: Block, subjectKey: Block, period: Sequence, extensions: Sequence[]): string {
  const algorithm = SIGNATURE_ALGORITHMS[issuer.key.asymmetricKeyType ?? ''];
  if (!algorithm) throw new Error(`CA key of type ${issuer.key.asymmetricKeyType} cannot sign here (EC or RSA only)`);
  const tbs = new Sequence({
    value: [
      new Constructed({ idBlock: context(0), value: [new Integer({ value: 2 })] }), // v3
      serialNumber(),
      algorithm(),
      issuer.name,
      period,
      subject,
      subjectKey,
      new Constructed({
        idBlock: context(3),
        value: [
          new Sequence({
            value: [
              ...extensions,
              extension(OID.subjectKeyIdentifier, false, new OctetString({ valueHex: keyIdentifier(subjectKey) })),
              extension(OID.authorityKeyIdentifier, false, new Sequence({ value: [new Primitive({ idBlock: context(0), valueHex: issuer.keyId })] })),
            ],
          }),
        ],
      }),
    ],
  });
  const tbsDer = encode(tbs);
  const signature = sign('sha256', tbsDer, issuer.key); // DER ECDSA-Sig-Value for EC keys
  const der = encode(new Sequence({ value: [parse(tbsDer), algorithm(), new BitString({ valueHex: new Uint8Array(signature) })] }));
  return new X509Certificate(der).toString();
}

const publicKeyInfo = (key: KeyObject): Block => parse(key.export({ type: 'spki', format: 'der' }));

export async function createCA(options: CAOptions = {}): Promise<CertificateAndKey> {
  const keys = await newKeyPair();
  const spki = publicKeyInfo(keys.publicKey);
  const issuer: Issuer = { name: commonName(options.commonName ?? 'NGTT development CA'), key: keys.privateKey, keyId: keyIdentifier(spki) };
  const cert = signCertificate(issuer, issuer.name, spki, validity(options, 3650), [
    extension(OID.basicConstraints, true, new Sequence({ value: [new AsnBoolean({ value: true }), new Integer({ value: 0 })] })),
    extension(OID.keyUsage, true, namedBits([KeyUsage.digitalSignature, KeyUsage.keyCertSign, KeyUsage.cRLSign])),
  ]);
  return { cert, key: pemKey(keys.privateKey) };
}

/** The CA as an issuer: its subject, its key and its key identifier (its SKI when it has one). */
function caIssuer(ca: CAInput): Issuer {
  const parts = certificateParts(new X509Certificate(toText(ca.cert)).raw);
  const ski = parts.extensions.find((e) => e.oid === OID.subjectKeyIdentifier);
  const skiValue = ski && parse(ski.value);
  const keyId = skiValue instanceof OctetString ? skiValue.valueBlock.valueHexView : keyIdentifier(parts.subjectPublicKeyInfo);
  return { name: parts.subject, key: createPrivateKey(toText(ca.key)), keyId };
}

async function issue(ca: CAInput, cn: string, options: ValidityOptions, extensions: Sequence[]): Promise<CertificateAndKey> {
  const issuer = caIssuer(ca);
  const keys = await newKeyPair();
  const cert = signCertificate(issuer, commonName(cn), publicKeyInfo(keys.publicKey), validity(options, 825), [
    extension(OID.basicConstraints, true, new Sequence({ value: [] })), // cA: FALSE (the default, left out)
    extension(OID.keyUsage, true, namedBits([KeyUsage.digitalSignature, KeyUsage.keyAgreement])),
    ...extensions,
  ]);
  return { cert, key: pemKey(keys.privateKey) };
}

export async function createServerCertificate(ca: CAInput, options: ServerCertificateOptions): Promise<CertificateAndKey> {
  const [first] = options.hosts;
  if (first === undefined) throw new Error('a server certificate needs at least one host name or IP address');
  // GeneralName: [2] dNSName (IA5String), [7] iPAddress (4 or 16 bytes), both IMPLICIT.
  const names = options.hosts.map((h) =>
    isIP(h) ? new Primitive({ idBlock: context(7), valueHex: ipBytes(h) }) : new Primitive({ idBlock: context(2), valueHex: Buffer.from(h, 'ascii') }),
  );
  return issue(ca, options.commonName ?? first, options, [
    extension(OID.subjectAltName, false, new Sequence({ value: names })),
    extension(OID.extKeyUsage, false, new Sequence({ value: [oid(OID.serverAuth)] })),
  ]);
}

export async function createDeviceCertificate(ca: CAInput, options: DeviceCertificateOptions): Promise<CertificateAndKey> {
  const extensions = [extension(OID.extKeyUsage, false, new Sequence({ value: [oid(OID.clientAuth)] }))];
  if (!options.omitDeviceId) {
    if (!options.deviceId) throw new Error('a device certificate needs a non-empty deviceId');
    extensions.push(extension(OID_DEVICE_ID, false, encodeUtf8String(options.deviceId)));
  }
  if (options.environment !== undefined) extensions.push(extension(OID_ENVIRONMENT, false, encodeInteger(options.environment)));
  for (const e of options.extensions ?? []) extensions.push(extension(e.oid, e.critical ?? false, e.value));
  return issue(ca, options.commonName ?? `device ${options.deviceId}`, options, extensions);
}
