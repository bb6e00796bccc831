/**
 * MiniJSON type bytes (minijson 2.x). A value is one type byte followed by its body, big-endian.
 * Bytes 0x80–0xFF are short strings (length in the low 7 bits); 0x40–0x4F short lists,
 * 0x50–0x5F short string-key objects and 0x60–0x6F short any-key maps (count in the low 4 bits).
 */
export const T = {
  STR8: 0,
  INT32: 1,
  INT16: 2,
  INT8: 3,
  UINT32: 4,
  UINT16: 5,
  UINT8: 6,
  LIST8: 7,
  NULL: 8,
  FLOAT32: 9,
  FLOAT64: 10,
  OBJ8: 11,
  UINT24: 12,
  STR16: 13,
  STR32: 14,
  LIST16: 15,
  LIST32: 16,
  OBJ16: 17,
  OBJ32: 18,
  MAP32: 19,
  MAP8: 20,
  MAP16: 21,
  TRUE: 22,
  FALSE: 23,
  BIGINT: 24,
  BIN8: 25,
  BIN16: 26,
  BIN32: 27,
  SHORT_LIST: 0x40,
  SHORT_OBJ: 0x50,
  SHORT_MAP: 0x60,
  SHORT_STR: 0x80,
} as const;

/** Default limit on container nesting, for both directions. */
export const DEFAULT_MAX_DEPTH = 512;
