/**
 * Renders bench/results/*.json into SVG bar charts and bench/results/README.md (full results).
 * Hand-written minimal SVG, no dependencies. `npm run bench:render` (also the last step of
 * `npm run bench`). Missing result files are skipped.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, RESULTS_DIR } from './lib/common.js';

const read = (name: string): any => {
  const file = join(RESULTS_DIR, `${name}.json`);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
};
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

interface Bar {
  label: string;
  value: number;
  highlight?: boolean;
}

/** Horizontal bars; log scale when the values span more than two decades. */
function barChart(title: string, unit: string, bars: Bar[], file: string): string {
  const shown = bars.filter((b) => Number.isFinite(b.value) && b.value > 0);
  const max = Math.max(...shown.map((b) => b.value));
  const min = Math.min(...shown.map((b) => b.value));
  const log = max / min > 100;
  const scale = (v: number) => (log ? Math.log10(v / (min / 2)) / Math.log10(max / (min / 2)) : v / max);
  const left = 230;
  const width = 760;
  const barW = width - left - 110;
  const rowH = 26;
  const height = 50 + shown.length * rowH + 24;
  const rows = shown
    .map((b, i) => {
      const y = 40 + i * rowH;
      const w = Math.max(2, scale(b.value) * barW);
      return (
        `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(b.label)}</text>` +
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${b.highlight ? '#2b6cb0' : '#a0aec0'}"/>` +
        `<text x="${left + w + 6}" y="${y + 15}">${esc(fmt(b.value))}</text>`
      );
    })
    .join('\n');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>
${rows}
<text x="${left}" y="${height - 8}" fill="#555">${esc(unit)}${log ? ' (log scale)' : ''}</text>
</svg>
`;
  writeFileSync(join(RESULTS_DIR, file), svg);
  return file;
}

const md: string[] = ['# NGTT benchmark results', ''];
md.push(
  'Produced by `npm run bench` (codec, latency, throughput, then this page) and `npm run bench:fleet`; charts by `bench/render.ts` from the JSON files beside this page.',
  'The machine is shared (2 cores, other work running), so contenders take turns within each round and the figures are medians over runs or rounds; ratios are taken pair by pair inside one run.',
  '',
);

const latency = read('latency');
if (latency) {
  md.push(`## Order delivery latency`, '', `${latency.date}, node ${latency.node}, MQTT: ${latency.mqtt ?? 'absent'}. Milliseconds from the server enqueuing an order.`, '');
  md.push('| protocol | handler p50 | p99 | max | server has ack p50 | p99 | max | method |', '|---|---:|---:|---:|---:|---:|---:|---|');
  for (const r of latency.rows)
    md.push(`| ${r.protocol} | ${fmt(r.handler.p50)} | ${fmt(r.handler.p99)} | ${fmt(r.handler.max)} | ${fmt(r.ack?.p50 ?? NaN)} | ${fmt(r.ack?.p99 ?? NaN)} | ${fmt(r.ack?.max ?? NaN)} | ${r.method} |`);
  const q = latency.ratios;
  md.push('', `NGTT p99 / MQTT QoS 1 p99 (median of per-run ratios): handler ${fmt(q.p99VsMqtt ?? NaN)}, ack ${fmt(q.p99AckVsMqtt ?? NaN)}. 1 s polling p99 / NGTT p99: ${fmt(q.p99TimesBetterThanPoll1s)}×; 60 s polling: ${fmt(q.p99TimesBetterThanPoll60s)}×.`);
  const p = latency.polling.interval1s;
  md.push(`Polling model check at 1 s: measured p50 ${fmt(p.measured.p50)} / p99 ${fmt(p.measured.p99)}, simulated p50 ${fmt(p.simulated.p50)} / p99 ${fmt(p.simulated.p99)}.`, '');
  const f = barChart('Order latency, p99 (ms, lower is better)', 'ms', latency.rows.map((r: any) => ({ label: r.protocol, value: r.handler.p99, highlight: r.protocol.startsWith('NGTT') })), 'latency.svg');
  md.push(`![order latency](${f})`, '');
}

const tp = read('throughput');
if (tp) {
  md.push(`## Data upload throughput`, '', `${tp.date}, node ${tp.node}, median of ${tp.rounds} rounds × ${tp.secondsPerRound} s. Values per second confirmed durable.`, '');
  const names: string[] = Object.keys(tp.throughput[0].median);
  md.push(`| batch | ${names.join(' | ')} |`, `|---:|${names.map(() => '---:').join('|')}|`);
  for (const t of tp.throughput) md.push(`| ${t.batch} | ${names.map((n) => fmt(t.median[n])).join(' | ')} |`);
  const rn: string[] = Object.keys(tp.throughput[0].ratios);
  md.push('', `| batch | ${rn.join(' | ')} |`, `|---:|${rn.map(() => '---:').join('|')}|`);
  for (const t of tp.throughput) md.push(`| ${t.batch} | ${rn.map((n) => fmt(t.ratios[n])).join(' | ')} |`);
  md.push('', ...tp.notes.map((n: string) => `- ${n}`), '');
  for (const t of tp.throughput) {
    const f = barChart(`Upload throughput, batch ${t.batch} (values/s, higher is better)`, 'values/s', names.map((n) => ({ label: n, value: t.median[n], highlight: n === 'NGTT' })), `throughput-${t.batch}.svg`);
    md.push(`![throughput batch ${t.batch}](${f})`);
  }
  md.push('', '### Bytes on the wire per value', '', 'TLS bytes both ways (TCP payload), per value, after the first batch; one batch at a time.', '');
  const bn: string[] = Object.keys(tp.bytes[0].perValue);
  md.push(`| batch | ${bn.join(' | ')} | NGTT / HTTPS+JSON |`, `|---:|${bn.map(() => '---:').join('|')}|---:|`);
  for (const b of tp.bytes) md.push(`| ${b.batch} | ${bn.map((n) => fmt(b.perValue[n].total)).join(' | ')} | ${fmt((b.perValue.NGTT?.total ?? NaN) / (b.perValue['HTTPS+JSON']?.total ?? NaN))} |`);
  md.push('', `Connection set-up (TLS handshake + first batch), bytes: ${Object.entries(tp.bytes[0].handshake).map(([k, v]) => `${k} ${fmt(v as number)}`).join(', ')}.`, '');
  const last = tp.bytes[tp.bytes.length - 1];
  const f = barChart(`Bytes per value, batch ${last.batch} (lower is better)`, 'bytes/value', bn.map((n) => ({ label: n, value: last.perValue[n].total, highlight: n === 'NGTT' })), 'bytes.svg');
  md.push(`![bytes per value](${f})`, '');
}

const fleet = read('fleet');
if (fleet) {
  md.push(`## Fleet on one server`, '', `${fleet.date}, node ${fleet.node}. Connect ${fleet.connectRatePerSecond}/s, idle ${fleet.idleSeconds} s (PING every ${fleet.pingMs / 1000} s), then ${fleet.ordersPerStep ?? 'one per device'} orders at ${fleet.orderRatePerSecond}/s. Largest N with order p99 < ${fleet.p99LimitMs} ms: **${fleet.largestHeld}**.`, '');
  md.push('| devices | connected | handshakes/s | server RSS idle (MiB) | KiB/device | CPU connect | CPU idle | CPU orders | order p50 | p99 | max (ms) | ok |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const s of fleet.steps)
    md.push(
      `| ${s.devices} | ${s.connected} | ${fmt(s.handshakesPerSecond)} | ${fmt(s.rssIdleMiB)} | ${fmt(s.rssPerDeviceKiB)} | ${fmt(s.cpuConnectPercent)}% | ${fmt(s.cpuIdlePercent)}% | ${fmt(s.cpuOrdersPercent)}% | ${fmt(s.orderLatency.p50)} | ${fmt(s.orderLatency.p99)} | ${fmt(s.orderLatency.max)} | ${s.ok ? 'yes' : 'no'} |`,
    );
  md.push('', ...fleet.notes.map((n: string) => `- ${n}`), '');
  const f = barChart('Fleet: server RSS when idle (MiB)', 'MiB', fleet.steps.map((s: any) => ({ label: `${s.devices} devices`, value: s.rssIdleMiB, highlight: s.ok })), 'fleet.svg');
  md.push(`![fleet](${f})`, '');
}

const codec = read('codec');
if (codec) {
  const load = codec.load ? ` Load average (1/5/15 min) ${codec.load.before.map((l: number) => l.toFixed(1)).join(' / ')} at the start: the machine was shared, not quiet.` : '';
  md.push(`## Codec`, '', `${codec.date}, node ${codec.node}, ${codec.cpu ?? ''}; median of ${codec.rounds} rounds × ${codec.msPerRound} ms per contender, each scenario in its own process (\`npm run bench:codec\`).${load}`, '');
  if (codec.rate) md.push(`Rates: ${codec.rate}. Ratios: median (and range) of the per-round ratios between contenders that ran back to back.`, '');
  if (codec.goals?.length) {
    md.push('| goal (issue 14) | median | range | met |', '|---|---:|---:|---|');
    for (const g of codec.goals) md.push(`| ${g.goal} | ${fmt(g.median)} | ${fmt(g.min)}–${fmt(g.max)} | ${g.met ? 'yes' : '**no**'} |`);
    md.push('');
  }
  const ratio = (v: any) => (typeof v === 'number' ? fmt(v) : v ? `${fmt(v.median)} (${fmt(v.min)}–${fmt(v.max)})` : 'n/a');
  md.push('| document | encode × msgpackr | decode × msgpackr | encode × JSON | decode × JSON |', '|---|---:|---:|---:|---:|');
  for (const [d, r] of Object.entries<any>(codec.ratios)) md.push(`| ${d} | ${ratio(r.encodeVsMsgpackr)} | ${ratio(r.decodeVsMsgpackr)} | ${ratio(r.encodeVsJson)} | ${ratio(r.decodeVsJson)} |`);
  md.push('');
  md.push('| document | codec | encode ops/CPU-s | decode ops/CPU-s | encode ops/s (wall) | decode ops/s (wall) | bytes |', '|---|---|---:|---:|---:|---:|---:|');
  for (const r of codec.rows) md.push(`| ${r.document} | ${r.codec} | ${fmt(r.encodeOps)} | ${fmt(r.decodeOps)} | ${fmt(r.encodeOpsWall ?? NaN)} | ${fmt(r.decodeOpsWall ?? NaN)} | ${r.bytes} |`);
  md.push('');
  const rows = codec.rows.filter((r: any) => r.document === 'pathpoints (1000 values)');
  const f = barChart('Codec: decode 1 000 pathpoint values (ops/s, higher is better)', 'ops/s', rows.map((r: any) => ({ label: r.codec, value: r.decodeOps, highlight: r.codec === 'minijson' })), 'codec.svg');
  md.push(`![codec](${f})`, '');
}

writeFileSync(join(RESULTS_DIR, 'README.md'), md.join('\n'));
console.log(`written ${join(RESULTS_DIR, 'README.md')}`);
