/**
 * MiniJSON: a compact binary encoding of JSON-like values (compatible with the reference
 * Python codec, minijson 2.x). This module is the project's `minijson-js`.
 *
 *   encode(value) -> Uint8Array      decode(bytes) -> value
 *
 * Numbers: safe integers (and every bigint) become the smallest integer type; other numbers
 * become a 32-bit float when that holds them exactly, else a 64-bit one. Integers beyond
 * +-(2^53-1) decode to bigint. Uint8Array/Buffer <-> binary. Objects whose keys are strings of
 * at most 255 UTF-8 bytes use the compact object types; a Map with other keys uses the any-key
 * types and decodes back to a Map.
 */
export { encode, encodeWithReserve, type EncodeOptions } from './encode.js';
export { decode, decodePrefix, type DecodeOptions } from './decode.js';
export { MiniJSONError, EncodingError, DecodingError } from './errors.js';
