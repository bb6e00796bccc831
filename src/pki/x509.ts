/**
 * The parts of an X.509 certificate (RFC 5280 §4.1) that NGTT reads, from its DER, parsed with
 * asn1js. Only reading: making certificates is certificates.ts.
 */
import { Boolean as AsnBoolean, Constructed, fromBER, ObjectIdentifier, OctetString, Sequence } from 'asn1js';

/** One extension: its OID, criticality and the DER of its value (the OCTET STRING's content). */
export interface CertificateExtension {
  oid: string;
  critical: boolean;
  value: Uint8Array;
}

type Block = ReturnType<typeof fromBER>['result'];

export interface CertificateParts {
  /** Name (a SEQUENCE), as parsed: re-encoding it gives the same bytes. */
  subject: Block;
  subjectPublicKeyInfo: Block;
  extensions: CertificateExtension[];
}

export class CertificateFormatError extends Error {
  override name = 'CertificateFormatError';
}

const isContext = (b: Block, tag: number) => b.idBlock.tagClass === 3 && b.idBlock.tagNumber === tag;
const view = (b: OctetString): Uint8Array => b.valueBlock.valueHexView;

function sequenceItems(b: Block | undefined, what: string): Block[] {
  if (!(b instanceof Sequence)) throw new CertificateFormatError(`${what} is not a SEQUENCE`);
  return b.valueBlock.value;
}

/** Parses DER bytes of one certificate; CertificateFormatError when they are not one. */
export function certificateParts(der: Uint8Array): CertificateParts {
  const { offset, result } = fromBER(der);
  if (offset === -1) throw new CertificateFormatError(`malformed DER: ${result.error}`);
  if (offset !== der.byteLength) throw new CertificateFormatError('bytes after the certificate');
  const tbs = sequenceItems(sequenceItems(result, 'the certificate')[0], 'tbsCertificate');
  // [0] version is optional (absent means v1); then serial, signature, issuer, validity, subject, key.
  const first = tbs[0] && isContext(tbs[0], 0) ? 1 : 0;
  const subject = tbs[first + 4];
  const subjectPublicKeyInfo = tbs[first + 5];
  if (!subject || !subjectPublicKeyInfo) throw new CertificateFormatError('tbsCertificate is incomplete');
  const wrapper = tbs.slice(first + 6).find((b) => isContext(b, 3));
  const extensions: CertificateExtension[] = [];
  if (wrapper) {
    if (!(wrapper instanceof Constructed)) throw new CertificateFormatError('extensions are not constructed');
    for (const item of sequenceItems(wrapper.valueBlock.value[0], 'extensions')) {
      const [id, second, third] = sequenceItems(item, 'an extension');
      const value = third ?? second;
      if (!(id instanceof ObjectIdentifier) || !(value instanceof OctetString)) throw new CertificateFormatError('an extension is not {OID, critical?, OCTET STRING}');
      if (third && !(second instanceof AsnBoolean)) throw new CertificateFormatError('an extension has a non-BOOLEAN critical flag');
      extensions.push({ oid: id.getValue(), critical: second instanceof AsnBoolean && second.getValue(), value: view(value) });
    }
  }
  return { subject, subjectPublicKeyInfo, extensions };
}
