/** NgttDevice's pure helpers: no network. */
import t from 'tap';
import { deviceIdOf, toSeries } from '../../src/device/ngtt-device.js';
import { makePki } from '../helpers/server-fixture.js';

t.test('toSeries accepts one reading, one series or a list', async (t) => {
  t.same(toSeries({ path: 'W1', value: 3 }, 1000), [{ path: 'W1', values: [[1000, 3]] }]);
  t.same(toSeries({ path: 'W1', value: 3, timestamp: 5 }), [{ path: 'W1', values: [[5, 3]] }]);
  t.same(toSeries({ path: 'W1', values: [[1, 2]] }), [{ path: 'W1', values: [[1, 2]] }]);
  t.same(toSeries([{ path: 'W1', values: [] }]), [{ path: 'W1', values: [] }]);
});

t.test('the device id comes from the certificate, PEM text or bytes', async (t) => {
  const pki = await makePki();
  const { cert } = await pki.device('boiler-7');
  t.equal(deviceIdOf(cert), 'boiler-7');
  t.equal(deviceIdOf(Buffer.from(cert)), 'boiler-7');
  t.throws(() => deviceIdOf(pki.server.cert), /DeviceID/);
});
