/**
 * File handles an idle quorum queue holds on the broker (issue #16 scale note).
 *
 *   npx tsx bench/quorum-fds.ts [queues=30]      (needs rabbitmq-diagnostics; BENCH_AMQP_URL)
 *
 * Declares N empty quorum queues under a scratch prefix, reads "File Descriptors: Total, limit"
 * from `rabbitmq-diagnostics status` before and after, deletes the queues, and writes
 * bench/results/quorum-fds.json. Keep N small on a shared broker: this is the resource it measures.
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import amqp from 'amqplib';

const url = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const n = Number(process.argv[2] ?? 30);
const fds = (): { total: number; limit: number } => {
  const m = /Total: (\d+), limit: (\d+)/.exec(execFileSync('rabbitmq-diagnostics', ['-q', 'status']).toString());
  if (!m) throw new Error('no "File Descriptors" section in rabbitmq-diagnostics status');
  return { total: Number(m[1]), limit: Number(m[2]) };
};
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
const prefix = `ngtt-bench-fds-${process.pid}`;
try {
  const before = fds();
  for (let i = 0; i < n; i++) await ch.assertQueue(`${prefix}.${i}`, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await new Promise((r) => setTimeout(r, 2_000)); // let the members start
  const after = fds();
  const version = /RabbitMQ version: (\S+)/.exec(execFileSync('rabbitmq-diagnostics', ['-q', 'status']).toString())?.[1];
  const result = { date: new Date().toISOString(), rabbitmq: version, queues: n, before, after, handlesPerQueue: (after.total - before.total) / n };
  console.log(JSON.stringify(result, null, 2));
  await writeFile(join(import.meta.dirname, 'results', 'quorum-fds.json'), JSON.stringify(result, null, 2) + '\n');
} finally {
  for (let i = 0; i < n; i++) await ch.deleteQueue(`${prefix}.${i}`).catch(() => {});
  await conn.close();
}
