/**
 * Broker outage during uploads and logs (issue #16), real processes: gateway A and sink S
 * (`ngtt server --store rabbitmq --pg-url …`), a fresh PostgreSQL database and a PRIVATE
 * RabbitMQ node (test/helpers/private-rabbitmq.ts) — the shared broker on 5672 is used by other
 * test files at the same time and must not be stopped. The device is our runtime (NgttDevice),
 * pushing values and writing logs the whole time; the broker is taken down with
 * `rabbitmqctl stop_app` and brought back with `start_app`.
 *
 * Expected: the gateway refuses the device while its broker is down, so the device keeps its
 * values in the spool and its logs in its log buffer and sends them when it is accepted again.
 * Afterwards PostgreSQL holds every pushed value exactly once, every order was executed exactly
 * once (also one that was running when the broker went, whose confirm could not be sent), and
 * every log record written arrived exactly once, also those written at the very moment of the
 * cut: the device keeps each LOGS batch until the echo of the PING it sends behind it, which the
 * gateway sends only once the batch is published and confirmed (machines/logs.ts), and sends it
 * again, unchanged, on the next connection otherwise; the store knows it by its content.
 */
import t from 'tap';
import { NgttDevice } from '../../../src/device/ngtt-device.js';
import type { ConnectionStateName } from '../../../src/device/ngtt-device.js';
import { adminCall, startGatewayProcess, writeServerPem, type GatewayProcess } from '../../helpers/gateway-process.js';
import { PG_SKIP_REASON, postgresReachable, query, testDatabase } from '../../helpers/postgres.js';
import { startPrivateBroker } from '../../helpers/private-rabbitmq.js';
import { order, uniquePrefix, waitFor } from '../../helpers/rabbitmq.js';
import { makePki } from '../../helpers/server-fixture.js';

// A private broker boots, stops and starts inside this file: on a loaded CI machine that alone
// can take a minute. Every wait below has its own bound and names what it waited for.
t.setTimeout(300_000);
const broker = (await postgresReachable()) ? await startPrivateBroker(t) : PG_SKIP_REASON;
if (typeof broker === 'string') {
  t.plan(0, broker);
} else {
  const pki = await makePki();
  const pem = await writeServerPem(pki);
  const prefix = uniquePrefix();
  const pgUrl = await testDatabase(t);
  const processes: GatewayProcess[] = [];
  t.teardown(async () => {
    for (const p of processes) await p.kill();
    await pem.remove();
  });
  // The whole private node is deleted at teardown, and its queues with it (one device queue here).
  const start = async (name: string, sink = false) => {
    const args = ['--store', 'rabbitmq', '--amqp-url', broker.url, '--amqp-prefix', prefix, '--pg-url', pgUrl, ...(sink ? ['--sink'] : [])];
    const p = await startGatewayProcess(name, [...args, ...pem.args]);
    processes.push(p);
    return p;
  };
  const count = async (sql: string, values?: unknown[]) => Number((await query<{ n: string }>(pgUrl, sql, values))[0].n);

  t.test('stop_app/start_app during uploads and logs: values and orders exactly once, logs held on the device', async (t) => {
    const dev = 'dev-outage';
    const [a] = await Promise.all([start('A'), start('S', true)]);
    const executed: number[] = [];
    // Order 5 is still running when the broker goes: it finishes only once the device has lost
    // its connection, so its confirm cannot reach the gateway and the order comes back later.
    let releaseOrder5 = () => {};
    const order5Released = new Promise<void>((resolve) => (releaseOrder5 = resolve));
    const states: ConnectionStateName[] = [];
    const device = new NgttDevice({
      host: '127.0.0.1',
      ngttPort: a.ngttPort,
      httpsPort: a.httpsPort,
      ca: pki.ca.cert,
      ...(await pki.device(dev)),
      ngtt: true,
      graceMs: 3_600_000, // stay on NGTT: the logs wait in the device's buffer, not in an HTTPS retry
      spoolPath: ':memory:',
      handlers: {
        onWrite: async (_path, value) => {
          executed.push(Number(value));
          if (value === 5) await order5Released;
        },
        onRead: () => 0,
      },
      timings: { backoff: { baseMs: 50, maxMs: 300 } },
      upload: { maxBatchAgeMs: 10, maxBatchValues: 20 },
      logs: { maxBatchAgeMs: 10, maxBatchRecords: 10, maxBuffered: 100_000 },
    });
    device.on('state', (state) => states.push(state));
    const received: string[] = [];
    device.on('order', (e) => e.phase === 'received' && e.id && received.push(e.id));
    t.teardown(() => device.close({ timeoutMs: 1_000 }).catch(() => {}));
    const log = device.logger({ level: 'info' }, null);
    device.start();

    // Values and logs flow the whole time.
    let pushing = true;
    let nextValue = 1;
    let nextLog = 1;
    const pushed: Promise<void>[] = [];
    const producer = (async () => {
      while (pushing) {
        const v = nextValue++;
        pushed.push(device.push({ path: 'V', value: v, timestamp: 1_700_000_000_000 + v }));
        if (v % 2 === 0) {
          const n = nextLog++;
          log.info(`log ${n}`);
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();

    const orderIds: string[] = [];
    for (let i = 1; i <= 5; i++) orderIds.push((await adminCall<{ id: string }>(a, `/devices/${dev}/orders`, 'POST', order(i))).id);
    await waitFor(async () => (await count('SELECT count(*) AS n FROM data')) >= 100, 'values to reach PostgreSQL before the outage', 20_000, 50);

    await waitFor(() => executed.includes(5), 'order 5 to be running', 20_000);
    await broker.stopApp();
    await waitFor(() => device.status().connection !== 'authenticated', 'the gateway to close the device connection', 20_000);
    releaseOrder5();
    const logsAtCut = nextLog;
    const statesAtCut = states.length;
    // The gateway keeps refusing while the broker is down; the device keeps producing.
    const refusedFrom = Date.now();
    await waitFor(() => nextLog >= logsAtCut + 500, 'the device to write logs while refused', 20_000);
    t.notOk(states.slice(statesAtCut).includes('authenticated'), `the device is refused while the broker is down (${states.slice(statesAtCut).filter((s) => s === 'backoff').length} attempts)`);
    const enqueueDuringOutage = await fetch(`http://127.0.0.1:${a.adminPort}/v1/admin/devices/${dev}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(order(99)),
    });
    t.equal(enqueueDuringOutage.status, 503, 'an order enqueued during the outage is refused at once with 503, not lost');
    t.comment(`refused for ${Date.now() - refusedFrom} ms; ${device.status().values.pending} values waiting in the spool`);

    await broker.startApp();
    for (let i = 6; i <= 10; i++) {
      // The gateway reconnects to the broker on its own; until then enqueueing answers an error.
      await waitFor(
        async () => {
          const r = await fetch(`http://127.0.0.1:${a.adminPort}/v1/admin/devices/${dev}/orders`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(order(i)),
          });
          if (r.ok) orderIds.push(((await r.json()) as { id: string }).id);
          return r.ok;
        },
        'the gateway to accept orders again',
        30_000,
        100,
      );
    }
    await waitFor(() => device.status().connection === 'authenticated', 'the device to be accepted again', 30_000);
    pushing = false;
    await producer;
    await Promise.all(pushed);
    const values = nextValue - 1;
    const logs = nextLog - 1;
    await waitFor(async () => (await count('SELECT count(*) AS n FROM data')) >= values, 'every value to reach PostgreSQL', 30_000, 100);
    await waitFor(() => executed.length >= 10, 'the ten orders to be executed', 30_000);
    await waitFor(async () => (await count(`SELECT count(*) AS n FROM orders WHERE state = 'confirmed'`)) === 10, 'the ten orders to be confirmed', 30_000, 100);
    await waitFor(async () => (await count('SELECT count(*) AS n FROM logs')) >= logs, 'every log record to arrive', 30_000, 100).catch(() => {}); // the assertion below names the missing
    t.match(device.status().logs, { buffered: 0, dropped: 0, refused: 0 }, 'the device holds no log record any more');
    await device.close({ timeoutMs: 5_000 });

    t.equal(await count('SELECT count(*) AS n FROM data'), values, `${values} values pushed, ${values} stored`);
    t.equal(await count('SELECT count(DISTINCT value) AS n FROM data'), values, 'each value once');
    t.ok(received.filter((id) => id === orderIds[4]).length >= 2, 'order 5 was delivered again after the outage (its confirm could not be sent)');
    t.same([...executed].sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'each order executed once (order 5, running at the cut and delivered again, too)');
    const stored = (await query<{ message: string; n: number }>(pgUrl, `SELECT message, count(*)::int AS n FROM logs GROUP BY message`)).map((r) => [Number(r.message.slice(4)), r.n]);
    t.same(stored.filter(([, n]) => n > 1), [], 'no log record stored twice');
    const have = new Set(stored.map(([m]) => m));
    const missing = Array.from({ length: logs }, (_, i) => i + 1).filter((n) => !have.has(n));
    t.same(missing, [], `every log record (${logs}) arrived, also those written at the cut (#${logsAtCut - 5}…#${logsAtCut + 5})`);
    t.equal(device.status().logs.stored, logs, 'the device counted each record stored once');
  });
}
