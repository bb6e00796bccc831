/**
 * NgttConnection keeps an idle link alive with PINGs and declares a stalled one dead (spec
 * §5.5), then reconnects by itself. Short timings; a loopback proxy stalls the link.
 */
import t from 'tap';
import { until } from '../helpers/wait.js';
import { NgttConnection } from '../../src/device/index.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { makePki, startTestServer } from '../helpers/server-fixture.js';

const pki = await makePki();
const server = await startTestServer(pki);
t.teardown(() => server.close());
const creds = { ca: pki.ca.cert, ...(await pki.device('dev-ka')) };


t.test('an idle link is kept alive with PINGs the server echoes', async (t) => {
  const c = await NgttConnection.connect({ host: '127.0.0.1', port: server.ngttPort, servername: 'localhost', ...creds, pingIdleMs: 100, pingDeadMs: 1000, receiveDeadMs: 2000 });
  t.teardown(() => c.close());
  let drops = 0;
  c.on('disconnected', () => drops++);
  await until(() => server.counters('dev-ka').pings >= 3, 'three PINGs at the server', 10_000);
  t.equal(drops, 0, 'echoed PINGs keep the link up');
  t.ok(c.connected);
});

t.test('a stalled link is declared dead and the connection comes back', async (t) => {
  const proxy = await FaultProxy.start(server.ngttPort);
  t.teardown(() => proxy.close());
  const c = await NgttConnection.connect({
    host: '127.0.0.1',
    port: proxy.port,
    servername: 'localhost',
    ...creds,
    pingIdleMs: 100,
    pingDeadMs: 400,
    receiveDeadMs: 800,
    backoff: { baseMs: 50, maxMs: 200 },
  });
  t.teardown(() => c.close());
  const events: string[] = [];
  const reasons: (string | undefined)[] = [];
  c.on('disconnected', (error) => (events.push('disconnected'), reasons.push(error?.message)));
  c.on('connected', () => events.push('connected'));
  proxy.stallAll(); // bytes stop flowing; neither side sees a close
  await until(() => events.includes('disconnected'), 'the dead link to be noticed', 10_000);
  t.same(reasons, ['PING not answered'], 'declared dead by the keepalive (PING unanswered for pingDeadMs), not by a socket error');
  await until(() => events.includes('connected'), 'a new connection', 10_000);
  t.ok(c.connected, 'reconnected through the proxy on a fresh connection');
  await c.syncPathpoints([{ path: 'W1', values: [[Date.now(), 1]] }]);
  t.pass('and it carries data again');
});
