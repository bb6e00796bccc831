import t from 'tap';
import { decode, DecodingError, encode } from '../../src/minijson/index.js';
import { fromTagged, hex, loadVectors, sameValue, unhex, type Tagged } from '../helpers/tagged.js';

type EncodeVector = { name: string; value: Tagged; hex: string };
type InvalidVector = { name: string; hex: string; expect: string };

for (const file of ['encode.json', 'random.json']) {
  t.test(`${file}: encode is byte-exact and decode gives the value back`, async (t) => {
    const vectors = loadVectors<EncodeVector>(file);
    t.ok(vectors.length > 0, 'vectors loaded');
    let failures = 0;
    for (const v of vectors) {
      const value = fromTagged(v.value);
      const got = hex(encode(value));
      if (got !== v.hex) {
        failures++;
        t.equal(got.slice(0, 120), v.hex.slice(0, 120), `encode ${v.name}`);
      }
      if (!sameValue(decode(unhex(v.hex)), value)) {
        failures++;
        t.fail(`decode ${v.name}`);
      }
    }
    t.equal(failures, 0, `all ${vectors.length} vectors of ${file} pass`);
  });
}

t.test('decode.json: non-canonical encodings decode to the value', async (t) => {
  for (const v of loadVectors<EncodeVector>('decode.json')) {
    t.ok(sameValue(decode(unhex(v.hex)), fromTagged(v.value)), v.name);
  }
});

t.test('invalid.json: every malformed input throws DecodingError', async (t) => {
  for (const v of loadVectors<InvalidVector>('invalid.json')) {
    t.equal(v.expect, 'DecodingError');
    t.throws(() => decode(unhex(v.hex)), DecodingError, v.name);
  }
});
