/** The demo's terminal display: the table is redrawn in place below the intro lines, with the last orders. */
import t from 'tap';
import { Display, HTTPS_NOTE, renderOrder, type FleetView } from '../../src/cli/demo/display.js';
import type { TimelineEntry } from '../../src/live/orders.js';

const device = (deviceId: string, ngttEnabled: boolean): FleetView['devices'][number] => ({
  deviceId,
  ngttEnabled,
  connection: ngttEnabled ? 'authenticated' : 'disabled',
  transport: ngttEnabled ? 'ngtt' : 'https',
  orders: { received: 3, executing: 0, acked: 3, rejected: 0 },
  values: { pushed: 10, confirmed: 8, pending: 2, rejected: 0 },
  logs: { stored: 5, refused: 0, dropped: 0, buffered: 1 },
  bytesSent: 1234,
  bytesReceived: 99,
  faults: { count: 0, active: [] },
});

const ngttOrder: TimelineEntry = { id: 'a', deviceId: 'dev-1', what: 'write W1=1037 (force)', via: 'ngtt', enqueuedAt: 1000, receivedAt: 1012, executingAt: 1013, doneAt: 1030, settledAt: 1031, serverState: 'confirmed', outcome: 'acked', stage: 'confirmed' };
const httpsOrder: TimelineEntry = { id: 'b', deviceId: 'dev-2', what: 'read f2, read d3', via: 'https', enqueuedAt: 2000, receivedAt: 2520, doneAt: 2540, serverState: 'delivered', outcome: 'acked', stage: 'executed' };
const view = (elapsedMs: number): FleetView => ({ elapsedMs, devices: [device('dev-1', true), device('dev-2', false)], ordersIssued: 2, orders: [httpsOrder, ngttOrder] });

/** A terminal that records what is written to it. */
function terminal(isTTY: boolean, columns = 200) {
  const written: string[] = [];
  return { written, stream: { isTTY, columns, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream };
}

t.test('an order line says what it was and its latency at each step', async (t) => {
  t.match(renderOrder(ngttOrder), /^dev-1 +write W1=1037 \(force\) +NGTT +confirmed +delivered \+12 ms, executed \+30 ms, confirmed \+31 ms$/);
  t.match(renderOrder(httpsOrder), /^dev-2 +read f2, read d3 +HTTPS +executed +poll delay \+520 ms, executed \+540 ms$/);
});

t.test('a terminal keeps the intro: the table is redrawn by moving back over its own lines', async (t) => {
  const { written, stream } = terminal(true);
  const display = new Display(stream);
  display.update(view(1000));
  display.update(view(2000));
  t.notMatch(written.join(''), /\x1b\[2J|\x1b\[H/, 'the screen is never cleared');
  t.notMatch(written[0]!, /^\x1b\[\d+F/, 'the first drawing starts where the intro ended');
  const lines = written[0]!.replace(/\x1b\[J/, '').split('\n').length - 1;
  t.match(written[1]!, new RegExp(`^\\x1b\\[${lines}F\\x1b\\[J`), 'the next one moves up exactly the lines it drew');
  t.match(written[1]!, /last orders/);
  t.ok(written[1]!.includes(HTTPS_NOTE), 'says why HTTPS orders count as delivered');
});

t.test('lines wider than the terminal are cut, so moving back never lands short', async (t) => {
  const { written, stream } = terminal(true, 40);
  new Display(stream).update(view(1000));
  for (const line of written[0]!.replace('\x1b[J', '').split('\n')) t.ok(line.length < 40, `cut: ${line}`);
});

t.test('a pipe gets plain lines, and each settled order once', async (t) => {
  const { written, stream } = terminal(false);
  const display = new Display(stream, 1000);
  display.update(view(1000));
  display.update(view(2500));
  t.notMatch(written.join(''), /\x1b\[/);
  t.equal(written.join('').match(/order dev-1 +write W1=1037/g)?.length, 1, 'printed once');
  t.match(written[0]!, /order dev-2 +read f2, read d3 +HTTPS +executed/);
});
