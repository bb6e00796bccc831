/**
 * The few DER encodings the NGTT certificate extensions need (spec §2): a string and a small
 * INTEGER. Hand-written because the extension values are single primitives; a full ASN.1
 * library would be more code to drive than this.
 */

const UTF8_STRING = 0x0c;
const INTEGER = 0x02;

/** ASN.1 string types a DeviceID may use (read side accepts any of them, spec §2). */
const STRING_DECODERS: Record<number, (b: Buffer) => string> = {
  0x0c: (b) => new TextDecoder('utf-8', { fatal: true }).decode(b), // UTF8String
  0x12: (b) => b.toString('latin1'), // NumericString
  0x13: (b) => b.toString('latin1'), // PrintableString
  0x14: (b) => b.toString('latin1'), // TeletexString (T.61; latin1 is the usual reading)
  0x15: (b) => b.toString('latin1'), // VideotexString
  0x16: (b) => b.toString('latin1'), // IA5String
  0x19: (b) => b.toString('latin1'), // GraphicString
  0x1a: (b) => b.toString('latin1'), // VisibleString
  0x1b: (b) => b.toString('latin1'), // GeneralString
  0x1c: decodeUtf32be, // UniversalString
  0x1e: (b) => new TextDecoder('utf-16be', { fatal: true }).decode(b), // BMPString
};

export class DerError extends Error {
  override name = 'DerError';
}

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

export function encodeUtf8String(s: string): Buffer {
  return tlv(UTF8_STRING, Buffer.from(s, 'utf8'));
}

/** Minimal two's-complement INTEGER for a safe integer. */
export function encodeInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n)) throw new RangeError(`${n} is not a safe integer`);
  const hex = BigInt.asUintN(64, BigInt(n)).toString(16).padStart(16, '0');
  let bytes = Buffer.from(hex, 'hex');
  // Drop leading bytes that only repeat the sign.
  while (bytes.length > 1 && ((bytes[0] === 0 && bytes[1] < 0x80) || (bytes[0] === 0xff && bytes[1] >= 0x80))) bytes = bytes.subarray(1);
  return tlv(INTEGER, bytes);
}

/** One whole TLV; anything after it, or a truncated one, is an error. */
function readTlv(der: Uint8Array): { tag: number; value: Buffer } {
  const b = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  if (b.length < 2) throw new DerError('truncated DER value');
  const tag = b[0];
  let length = b[1];
  let offset = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || b.length < 2 + count) throw new DerError('bad DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + b[2 + i];
    offset += count;
  }
  if (offset + length !== b.length) throw new DerError('DER length does not match the value');
  return { tag, value: b.subarray(offset) };
}

export function decodeString(der: Uint8Array): string {
  const { tag, value } = readTlv(der);
  const decoder = STRING_DECODERS[tag];
  if (!decoder) throw new DerError(`expected an ASN.1 string, got tag 0x${tag.toString(16)}`);
  try {
    return decoder(value);
  } catch {
    throw new DerError('string bytes do not decode');
  }
}

export function decodeInteger(der: Uint8Array): number {
  const { tag, value } = readTlv(der);
  if (tag !== INTEGER) throw new DerError(`expected an INTEGER, got tag 0x${tag.toString(16)}`);
  if (value.length === 0 || value.length > 6) throw new DerError('INTEGER is empty or too large');
  return value.readIntBE(0, value.length);
}

function decodeUtf32be(b: Buffer): string {
  if (b.length % 4) throw new DerError('UniversalString length is not a multiple of 4');
  let s = '';
  for (let i = 0; i < b.length; i += 4) s += String.fromCodePoint(b.readUInt32BE(i));
  return s;
}
