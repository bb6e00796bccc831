import t from 'tap';
import { parsePathpointData, PayloadError } from '../../src/protocol/index.js';

t.test('parsePathpointData accepts values and error entries and returns the payload', async (t) => {
  const payload = [{ path: 'W1', values: [[1_760_000_000_000, 5], [false, 1_760_000_001_000, 'timeout'], [1_760_000_002_000, 'text']] }];
  t.equal(parsePathpointData(payload), payload);
});

t.test('parsePathpointData names the path of what is wrong', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{}, /^\$: expected a list/],
    [[1], /^\$\[0\]: expected \{path, values\}/],
    [[{ path: '', values: [] }], /^\$\[0\]\.path: /],
    [[{ path: 'W1', values: 3 }], /^\$\[0\]\.values: expected a list/],
    [[{ path: 'W1', values: [] }, { path: 'W2', values: [[1, 2], 'x'] }], /^\$\[1\]\.values\[1\]: expected \[timestamp_ms/],
    [[{ path: 'W1', values: [[-1, 2]] }], /^\$\[0\]\.values\[0\]\[0\]: expected a timestamp/],
    [[{ path: 'W1', values: [[1, 2], [1, null]] }], /^\$\[0\]\.values\[1\]\[1\]: expected an int, float or string/],
    [[{ path: 'W1', values: [[false, 1.5, 'timeout']] }], /^\$\[0\]\.values\[0\]\[1\]: expected a timestamp/],
    [[{ path: 'W1', values: [[false, 1, 'nope']] }], /^\$\[0\]\.values\[0\]\[2\]: expected one of /],
    [[{ path: 'W1', values: [[1, 2, 3]] }], /^\$\[0\]\.values\[0\]: expected \[timestamp_ms/],
  ];
  for (const [payload, message] of cases) t.throws(() => parsePathpointData(payload), { name: PayloadError.name, message }, JSON.stringify(payload));
});
