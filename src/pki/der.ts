/**
 * DER values of the NGTT certificate extensions (spec §2): the DeviceID is an ASN.1 string
 * (UTF8String when we write it; any string type is read), the Environment an INTEGER. Parsed
 * with asn1js (what @peculiar/asn1-schema builds on); this file adds only the strictness DER
 * asks for (one whole primitive value, nothing after it) and the string types' decoding.
 */
import { fromBER, Integer, Utf8String } from 'asn1js';

const INTEGER = 2;

/** ASN.1 universal string types a DeviceID may use, by tag number, with their decoding. */
const STRING_DECODERS: Record<number, (b: Buffer) => string> = {
  12: (b) => new TextDecoder('utf-8', { fatal: true }).decode(b), // UTF8String
  18: (b) => b.toString('latin1'), // NumericString
  19: (b) => b.toString('latin1'), // PrintableString
  20: (b) => b.toString('latin1'), // TeletexString (T.61; latin1 is the usual reading)
  21: (b) => b.toString('latin1'), // VideotexString
  22: (b) => b.toString('latin1'), // IA5String
  25: (b) => b.toString('latin1'), // GraphicString
  26: (b) => b.toString('latin1'), // VisibleString
  27: (b) => b.toString('latin1'), // GeneralString
  28: decodeUtf32be, // UniversalString
  30: (b) => new TextDecoder('utf-16be', { fatal: true }).decode(b), // BMPString
};

export class DerError extends Error {
  override name = 'DerError';
}

export function encodeUtf8String(s: string): Buffer {
  return Buffer.from(new Utf8String({ value: s }).toBER());
}

/** Minimal two's-complement INTEGER of a safe integer. */
export function encodeInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n)) throw new RangeError(`${n} is not a safe integer`);
  return Buffer.from(new Integer({ value: n }).toBER());
}

/** One whole primitive universal value; anything after it, a truncated or a constructed one is an error. */
function readValue(der: Uint8Array): { tag: number; value: Buffer } {
  if (der.byteLength === 0) throw new DerError('empty DER value');
  const { offset, result } = fromBER(der);
  if (offset === -1) throw new DerError(`malformed DER: ${result.error || 'unreadable'} (bad length?)`);
  if (offset !== der.byteLength) throw new DerError(`${der.byteLength - offset} bytes after the DER value`);
  const id = result.idBlock;
  if (id.tagClass !== 1) throw new DerError(`expected a universal ASN.1 type, got tag class ${id.tagClass}`);
  if (id.isConstructed) throw new DerError(`tag ${id.tagNumber} is constructed (BER), not DER`);
  const view = (result.valueBlock as { valueHexView?: Uint8Array }).valueHexView ?? new Uint8Array(0);
  return { tag: id.tagNumber, value: Buffer.from(view.buffer, view.byteOffset, view.byteLength) };
}

export function decodeString(der: Uint8Array): string {
  const { tag, value } = readValue(der);
  const decoder = STRING_DECODERS[tag];
  if (!decoder) throw new DerError(`expected an ASN.1 string, got tag ${tag}`);
  try {
    return decoder(value);
  } catch {
    throw new DerError('string bytes do not decode');
  }
}

export function decodeInteger(der: Uint8Array): number {
  const { tag, value } = readValue(der);
  if (tag !== INTEGER) throw new DerError(`expected an INTEGER, got tag ${tag}`);
  if (value.length === 0 || value.length > 6) throw new DerError('INTEGER is empty or too large');
  return value.readIntBE(0, value.length);
}

function decodeUtf32be(b: Buffer): string {
  if (b.length % 4) throw new DerError('UniversalString length is not a multiple of 4');
  let s = '';
  for (let i = 0; i < b.length; i += 4) s += String.fromCodePoint(b.readUInt32BE(i));
  return s;
}
