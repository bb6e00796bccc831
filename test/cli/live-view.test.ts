/**
 * The live view end to end, as a device engineer on a bench without internet meets it: `ngtt
 * demo` started as a process, its page opened in Debian's Chromium (driven by playwright-core,
 * no browser download). Every device and its machines appear with the right active states, an
 * order sent from the page reaches "confirmed" in the timeline, a browser opened late shows the
 * same current state, and the page never asks anything of a host other than 127.0.0.1.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import t from 'tap';
import { ROOT, startNgtt } from '../helpers/cli.js';

/** What the checks run in the page use of the DOM (the tests compile without the DOM library). */
interface PageElement {
  dataset: Record<string, string | undefined>;
  querySelectorAll(selector: string): { length: number };
}
declare const document: { querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): { length: number } };

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Debian's chromium, installed here when missing and possible (as root, with apt). */
function chromiumProblem(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'ignore', timeout: 300_000 });
  let apt = install();
  if (apt.status !== 0 && !apt.error) {
    // A fresh machine may have no package lists yet.
    spawnSync('apt-get', ['update'], { stdio: 'ignore', timeout: 300_000 });
    apt = install();
  }
  if (existsSync(CHROMIUM)) return undefined;
  return `needs Debian's chromium at ${CHROMIUM}, and \`apt-get install -y chromium\` did not provide it (${apt.error?.message ?? `exit ${apt.status}`})`;
}

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What a page shows of one device's long-lived machines: name → active leaf states. */
async function machinesOf(page: Page, deviceId: string): Promise<Record<string, string>> {
  return page.$$eval(`.machine[data-device="${deviceId}"]`, (cards) =>
    Object.fromEntries((cards as unknown as PageElement[]).filter((c) => !c.dataset.name!.startsWith('order-')).map((c) => [c.dataset.name, c.dataset.active])),
  );
}

// A browser rendering Mermaid charts for three devices twice: on a loaded CI machine that took
// 110 s once (about 20 s when quiet), so the file gets more than tap's default 120 s.
t.setTimeout(300_000);
const problem = chromiumProblem();

t.test('the live view shows the fleet and its machines, sends an order, and serves late browsers', { skip: problem }, async (t) => {
  const { chromium } = await import('playwright-core');
  const data = await mkdtemp(join(tmpdir(), 'ngtt-live-'));
  t.teardown(() => rm(data, { recursive: true, force: true }));
  const output = join(ROOT, '.tap', 'output', 'live-view');
  await mkdir(output, { recursive: true });

  const demo = startNgtt(t, ['demo', '--data', data, '--devices', '3', '--port', '0', '--https-port', '0', '--admin-port', '0', '--duration', '600']); // a bound only: the test stops it with Ctrl-C
  const url = await waitFor('the live view URL', () => demo.out.match(/live view: open (http:\/\/127\.0\.0\.1:\d+\/)/)?.[1]);

  const browsers: Browser[] = [];
  t.teardown(() => Promise.all(browsers.map((b) => b.close())));
  const requests: string[] = [];
  const open = async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    browsers.push(browser);
    const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    context.on('request', (r) => requests.push(r.url()));
    const page = await context.newPage();
    page.on('websocket', (ws) => requests.push(ws.url()));
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    return { page, errors };
  };

  const { page, errors } = await open();
  // Every device, with the right connection and transport: the last one has NGTT off.
  await page.waitForFunction(() => document.querySelectorAll('#fleet tbody tr').length === 3);
  for (const id of ['dev-1', 'dev-2']) {
    await page.waitForSelector(`#fleet tr[data-device="${id}"] td[data-field="connection"]:text-is("authenticated")`);
    t.equal(await page.textContent(`#fleet tr[data-device="${id}"] td[data-field="transport"]`), 'NGTT', `${id} on NGTT`);
  }
  t.equal(await page.textContent('#fleet tr[data-device="dev-3"] td[data-field="connection"]'), 'disabled', 'dev-3 has NGTT off');
  await page.waitForSelector('#fleet tr[data-device="dev-3"] td[data-field="transport"]:text-is("HTTPS")');

  // Their machines, drawn from the definitions, with the active states lit.
  for (const id of ['dev-1', 'dev-2', 'dev-3']) {
    const names = id === 'dev-3' ? ['supervisor', 'upload', 'logs'] : ['supervisor', 'connection', 'upload', 'logs'];
    for (const name of names) {
      const card = `.machine[data-device="${id}"][data-name="${name}"]`;
      await page.waitForSelector(`${card}[data-chart="drawn"] svg`);
      await page.waitForFunction((sel) => document.querySelector(sel)!.querySelectorAll('g.active-leaf').length > 0, card);
    }
  }
  const dev1 = await machinesOf(page, 'dev-1');
  t.match(dev1.supervisor, /\bngtt\.enabled\.running\b/, 'dev-1: the connection child runs');
  t.match(dev1.supervisor, /\broute\.ngtt\b/, 'dev-1: orders, data and logs go over NGTT');
  t.match(dev1.connection, /\bsession\.authenticated\.receiving\.listening\b/, 'dev-1: the connection is authenticated');
  t.match(dev1.upload, /\blink\.ngtt\./, 'dev-1: upload on the NGTT link');
  const dev3 = await machinesOf(page, 'dev-3');
  t.match(dev3.supervisor, /\bngtt\.disabled\b/, 'dev-3: NGTT disabled');
  t.match(dev3.supervisor, /\broute\.https\./, 'dev-3: routed over HTTPS');
  t.notOk('connection' in dev3, 'dev-3 has no connection machine');
  t.match(dev3.upload, /\blink\.https\./, 'dev-3: upload on the HTTPS link');
  // The lit nodes are the active states' own (Mermaid ids carry the chart's state ids).
  const lit = await page.$eval('.machine[data-device="dev-1"][data-name="connection"]', (c) => c.querySelectorAll('g.active-leaf').length);
  t.equal(lit, 2, 'connection: both parallel leaves (sending, receiving) are lit');

  // An order sent from the page goes through the admin API and the machines to "confirmed".
  await page.selectOption('#order-device', 'dev-1');
  await page.selectOption('#order-kind', 'write');
  await page.fill('#order-path', 'W1');
  await page.fill('#order-value', '4321');
  await page.click('#order-send');
  await page.waitForSelector('#order-result[data-outcome="sent"]');
  const orderId = (await page.getAttribute('#order-result', 'data-order'))!;
  t.match(orderId, /^[0-9a-f-]{36}$/, 'the admin API gave the order an id');
  const row = `#timeline tr[data-order="${orderId}"]`;
  await page.waitForSelector(`${row}[data-stage="confirmed"]`, { timeout: 20_000 });
  t.equal(await page.textContent(`${row} td[data-field="what"]`), 'write W1=4321', 'the timeline says what the order was');
  // It went through an order actor on dev-1, shown with its chart, ended in `acked`.
  const orderCard = `.machine.mine[data-device="dev-1"][data-order="${orderId}"]`;
  await page.waitForSelector(`${orderCard}[data-chart="drawn"]`);
  t.equal(await page.getAttribute(orderCard, 'data-active'), 'acked', 'the order machine ended in acked');
  t.equal(await page.textContent(`${orderCard} .what`), 'write W1=4321');
  t.match(await page.textContent(`${row} td[data-field="delivered"]`), /^\+\d+ ms$/, 'delivery latency shown');
  t.match(await page.textContent(`${row} td[data-field="confirmed"]`), /^\+\d+ ms confirmed$/, 'confirmation latency shown');
  // An HTTPS device's orders are delivered by a poll: its delay is shown, and "delivered" is final.
  const polled = '#timeline tr[data-stage="executed"]:has(td[data-field="via"]:text-is("HTTPS"))';
  await page.waitForSelector(`${polled} td[data-field="delivered"]:text-matches("^[+][0-9]+ ms poll delay$")`);
  t.pass('HTTPS: the poll delay is shown');
  t.match(await page.textContent(`${polled} td[data-field="confirmed"]`), /n\/a \(HTTPS\)/, 'HTTPS: no confirmation to wait for');
  const screenshot = join(output, 'live-view.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.locator(orderCard).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(output, 'live-view-order.png') });
  t.comment(`screenshots: ${screenshot}, ${join(output, 'live-view-order.png')}`);

  // A second browser, opened late, starts from the same current state (not the tail of an event log).
  const late = await open();
  for (const id of ['dev-1', 'dev-2', 'dev-3']) {
    await late.page.waitForSelector(`.machine[data-device="${id}"][data-name="supervisor"][data-chart="drawn"]`);
    await late.page.waitForSelector(`.machine[data-device="${id}"][data-name="upload"]`);
    // Both pages follow the same stream; states that flip (an HTTPS poll each second) may differ for one push.
    const both = async () => ({ early: await machinesOf(page, id), now: await machinesOf(late.page, id) });
    let seen = await both();
    for (const deadline = Date.now() + 10_000; seen.now.supervisor !== seen.early.supervisor && Date.now() < deadline; ) seen = await both();
    t.same(Object.keys(seen.now).sort(), Object.keys(seen.early).sort(), `${id}: the late page shows the same machines`);
    t.equal(seen.now.supervisor, seen.early.supervisor, `${id}: same supervisor states`);
    if (seen.early.connection) t.equal(seen.now.connection, seen.early.connection, `${id}: same connection states`);
    const connection = `#fleet tr[data-device="${id}"] td[data-field="connection"]`;
    t.equal(await late.page.textContent(connection), await page.textContent(connection), `${id}: same connection in the fleet table`);
  }
  await late.page.waitForSelector(`${row}[data-stage="confirmed"]`);
  t.pass('the late page has the order, confirmed');

  t.same(errors.concat(late.errors), [], 'no script error on the pages');
  const outside = requests.filter((r) => !/^(https?|wss?):\/\/127\.0\.0\.1:\d+\//.test(r) && !r.startsWith('data:'));
  t.same(outside, [], `the pages asked nothing of any other host (${requests.length} requests)`);
  t.ok(requests.some((r) => r.endsWith('/mermaid.min.js')), 'Mermaid came from the live view itself');

  demo.child.kill('SIGINT');
  t.equal(await demo.exited, 0, `the demo stops cleanly (stderr: ${demo.err.trim()})`);
});
