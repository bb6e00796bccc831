import { encode, decode, DecodingError } from 'ngtt/minijson';

const bytes = encode([{ path: 'W1', values: [[Date.now(), 21.5]] }]); // Uint8Array
const value = decode(bytes);
console.log(`${bytes.length} bytes`, JSON.stringify(value));

try {
  decode(bytes.subarray(0, 10));                   // cut short
} catch (e) {
  if (e instanceof DecodingError) console.log('refused:', e.message);
}
