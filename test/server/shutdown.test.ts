/** close() ends promptly whatever the connections are doing, and loses no order. */
import { connect } from 'node:net';
import t from 'tap';
import { makePki, readSection, startTestServer } from '../helpers/server-fixture.js';
import { within } from '../helpers/wait.js';

const pki = await makePki();

/** How long close() took; fails the test when it takes more than `ms`. */
async function closeWithin(close: () => Promise<void>, ms: number): Promise<number> {
  const started = Date.now();
  await within(close(), 'close()', ms);
  return Date.now() - started;
}

t.test('a device whose session is still starting does not hold close() up', async (t) => {
  const server = await startTestServer(pki);
  const id = await server.enqueueOrder('dev-a', readSection('W1'));
  const device = await server.connect('dev-a'); // handshake done; the session may not have started
  const took = await closeWithin(() => server.close(), 5000);
  t.ok(took < 5000, `closed in ${took} ms`);
  await device.closed;
  // Reopening the same store is not possible for a memory store; the order's state is enough:
  const order = await server.store.getOrder(id);
  t.not(order?.state, 'confirmed', 'the order was not settled by the shutdown');
});

t.test('a client stuck in the TLS handshake does not hold close() up', async (t) => {
  const server = await startTestServer(pki);
  const raw = connect(server.ngttPort, '127.0.0.1'); // TCP only: never says ClientHello
  await new Promise((r) => raw.once('connect', r));
  raw.on('error', () => {});
  const took = await closeWithin(() => server.close(), 5000);
  t.ok(took < 5000, `closed in ${took} ms`);
  await new Promise((r) => (raw.destroyed ? r(undefined) : raw.once('close', r)));
  t.ok(raw.destroyed, 'the half-open connection was ended');
});

t.test('connections arriving during shutdown are refused, not served', async (t) => {
  const server = await startTestServer(pki);
  const attempts = Array.from({ length: 5 }, () => server.connect('dev-b').catch(() => null));
  const took = await closeWithin(() => server.close(), 5000);
  t.ok(took < 5000, `closed in ${took} ms`);
  for (const d of await Promise.all(attempts)) if (d) await d.closed;
  t.same(server.connectedDevices(), [], 'no session outlives the server');
});
