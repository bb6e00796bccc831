/**
 * An NgttDevice in a child process (so a test can SIGKILL it), config from NGTT_TEST_DEVICE.
 * Every execution is appended to `execLog` as "<path> <pid>"; every value pushed is logged to
 * `valueLog` as "try V=n" before push() and "ok V=n" once it resolved (both appends reach the
 * kernel before the next step, so a SIGKILL loses none of them). A line "drain" on stdin stops
 * the pushing; the process prints `{"pending": n, "connection": …, "drained": bool}` lines to
 * stdout every 50 ms (`drained` once the last push has resolved).
 */
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { NgttDevice } from '../../src/device/ngtt-device.js';
import { countingHandlers } from './reliability.js';

const c = JSON.parse(process.env.NGTT_TEST_DEVICE ?? '{}') as {
  port: number;
  httpsPort: number;
  ca: string;
  cert: string;
  key: string;
  spoolPath: string;
  execLog: string;
  valueLog: string;
  firstValue: number;
};
const device = new NgttDevice({
  host: '127.0.0.1',
  ngttPort: c.port,
  httpsPort: c.httpsPort,
  ca: c.ca,
  cert: c.cert,
  key: c.key,
  ngtt: true,
  graceMs: 3_600_000,
  spoolPath: c.spoolPath,
  handlers: countingHandlers((path) => appendFileSync(c.execLog, `${path} ${process.pid}\n`)),
  timings: { backoff: { baseMs: 5, maxMs: 50 } },
  upload: { maxBatchAgeMs: 5, maxBatchValues: 20 },
});
device.start();

let pushing = true;
/** True once the push loop has ended after "drain": from then on `pending` can only fall. */
let drained = false;
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'drain') pushing = false;
});
setInterval(() => process.stdout.write(JSON.stringify({ pending: device.status().values.pending, connection: device.status().connection, drained }) + '\n'), 50);

let v = c.firstValue;
while (pushing) {
  // Five at a time: one group commit in the spool.
  const values = [v, v + 1, v + 2, v + 3, v + 4];
  v += 5;
  appendFileSync(c.valueLog, values.map((value) => `try V=${value}\n`).join(''));
  await Promise.all(values.map((value) => device.push({ path: 'V', value, timestamp: 1_700_000_000_000 + value })));
  appendFileSync(c.valueLog, values.map((value) => `ok V=${value}\n`).join(''));
  await new Promise((r) => setTimeout(r, 2));
}
drained = true;
