/**
 * Renders bench/results/*.json (the committed, full runs) into SVG bar charts,
 * bench/results/README.md, and the benchmark tables of the project README (between
 * `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`), so the README and the results cannot
 * disagree; test/bench/render.test.ts checks that they do not. Hand-written minimal SVG, no
 * dependencies. `npm run bench:render` (also the last step of `npm run bench`). Missing result
 * files are skipped. Pure: the output depends on the JSON only.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_DIR, fmt, RESULTS_DIR } from './lib/common.js';

export const README_FILE = resolve(BENCH_DIR, '..', 'README.md');

/** A committed result, bench/results/NAME.json, or null. */
export const readCommitted = (name: string): any => {
  const file = join(RESULTS_DIR, `${name}.json`);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
};

/** 2.57 M, 452 k, 90.10 */
const human = (n: number): string =>
  !Number.isFinite(n) ? 'n/a' : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e4 ? `${Math.round(n / 1e3)} k` : fmt(n);
const times = (n: number) => (Number.isFinite(n) ? `${fmt(n)}×` : 'n/a');
const verdict = (met: boolean | null) => (met === null ? 'n/a' : met ? 'met' : '**missed**');
const loadText = (l: number[] | undefined) => (l ? l.map((x) => x.toFixed(1)).join(' / ') : 'not recorded');
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

interface Bar {
  label: string;
  value: number;
  highlight?: boolean;
}

/** Horizontal bars; log scale when the values span more than two decades. */
function barChart(title: string, unit: string, bars: Bar[]): string {
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
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>
${rows}
<text x="${left}" y="${height - 8}" fill="#555">${esc(unit)}${log ? ' (log scale)' : ''}</text>
</svg>
`;
}

export interface Rendered {
  /** bench/results/README.md */
  resultsReadme: string;
  /** File name in bench/results → SVG text. */
  svgs: Record<string, string>;
  /** Block name → the README text between its markers. */
  readmeBlocks: Record<string, string>;
}

/** A full throughput run: at least two batch sizes, each with at least three contenders. */
const fullThroughput = (tp: any) => tp && !tp.narrowed && tp.throughput.length >= 2 && tp.throughput.every((t: any) => Object.keys(t.median).length >= 3);

export function render(read: (name: string) => any = readCommitted): Rendered {
  const svgs: Record<string, string> = {};
  const chart = (file: string, title: string, unit: string, bars: Bar[]) => ((svgs[file] = barChart(title, unit, bars)), file);
  const latency = read('latency');
  const tp = read('throughput');
  const fleet = read('fleet');
  const codec = read('codec');

  const md: string[] = ['# NGTT benchmark results', ''];
  md.push(
    'Produced by `npm run bench` (codec, latency, throughput, then this page) and `npm run bench:fleet`; this page, the charts and the README tables by `bench/render.ts` from the JSON files beside this page.',
    'The machine is shared (2 cores, other work running; load averages are recorded with each run), so contenders take turns within each round and the figures are medians over runs or rounds; ratios are taken pair by pair inside one run.',
    '',
  );

  if (latency) {
    md.push(`## Order delivery latency`, '', `${latency.date}, node ${latency.node}, MQTT: ${latency.mqtt ?? 'absent'}. Load average at the start: ${loadText(latency.load?.before)}. Milliseconds from the server enqueuing an order.`, '');
    md.push('| protocol | handler p50 | p99 | max | server has ack p50 | p99 | max | method |', '|---|---:|---:|---:|---:|---:|---:|---|');
    for (const r of latency.rows)
      md.push(`| ${r.protocol} | ${fmt(r.handler.p50)} | ${fmt(r.handler.p99)} | ${fmt(r.handler.max)} | ${fmt(r.ack?.p50 ?? NaN)} | ${fmt(r.ack?.p99 ?? NaN)} | ${fmt(r.ack?.max ?? NaN)} | ${r.method} |`);
    const q = latency.ratios;
    const perRun = latency.perRun?.filter((r: any) => r.mqtt).map((r: any) => fmt(r.ngtt.handler.p99 / r.mqtt.handler.p99));
    md.push(
      '',
      `NGTT p99 / MQTT QoS 1 p99 (median of per-run ratios${perRun?.length ? `; runs: ${perRun.join(', ')}` : ''}): handler ${fmt(q.p99VsMqtt ?? NaN)}, ack ${fmt(q.p99AckVsMqtt ?? NaN)} (goal ≤ 0.5). 1 s polling p99 / NGTT p99: ${fmt(q.p99TimesBetterThanPoll1s)}×; 60 s polling: ${fmt(q.p99TimesBetterThanPoll60s)}×.`,
    );
    const p = latency.polling.interval1s;
    md.push(`Polling model check at 1 s: measured p50 ${fmt(p.measured.p50)} / p99 ${fmt(p.measured.p99)}, simulated p50 ${fmt(p.simulated.p50)} / p99 ${fmt(p.simulated.p99)}.`, '');
    if (latency.notes?.length) md.push(...latency.notes.map((n: string) => `- ${n}`), '');
    const f = chart('latency.svg', 'Order latency, p99 (ms, lower is better)', 'ms', latency.rows.map((r: any) => ({ label: r.protocol, value: r.handler.p99, highlight: r.protocol.startsWith('NGTT') })));
    md.push(`![order latency](${f})`, '');
  }

  if (tp) {
    md.push(`## Data upload throughput`, '');
    if (!fullThroughput(tp)) md.push('**Not a full run** (fewer than two batch sizes or three contenders): rerun `npm run bench:throughput` and commit its result.', '');
    md.push(
      `${tp.date}, node ${tp.node}, median of ${tp.rounds} rounds × ${tp.secondsPerRound} s. Values per second confirmed durable${tp.distinctBatches ? ', every batch distinct' : ''}. Load average at the start: ${loadText(tp.load?.before)}, at the end: ${loadText(tp.load?.after)}.`,
      '',
    );
    const names: string[] = Object.keys(tp.throughput[0].median);
    md.push(`| batch | ${names.join(' | ')} |`, `|---:|${names.map(() => '---:').join('|')}|`);
    for (const t of tp.throughput) md.push(`| ${t.batch} | ${names.map((n) => fmt(t.median[n])).join(' | ')} |`);
    const rn: string[] = Object.keys(tp.throughput[0].ratios);
    if (rn.length) {
      md.push('', `| batch | ${rn.join(' | ')} |`, `|---:|${rn.map(() => '---:').join('|')}|`);
      for (const t of tp.throughput) md.push(`| ${t.batch} | ${rn.map((n) => fmt(t.ratios[n])).join(' | ')} |`);
    }
    if (tp.storedCheck) md.push('', `Store check: ${tp.storedCheck.batches.toLocaleString('en-US')} batches (${tp.storedCheck.values.toLocaleString('en-US')} values) confirmed over the run, and the server's store grew by exactly that many.`);
    md.push('', ...tp.notes.map((n: string) => `- ${n}`), '');
    for (const t of tp.throughput) {
      const f = chart(`throughput-${t.batch}.svg`, `Upload throughput, batch ${t.batch} (values/s, higher is better)`, 'values/s', names.map((n) => ({ label: n, value: t.median[n], highlight: n === 'NGTT' })));
      md.push(`![throughput batch ${t.batch}](${f})`);
    }
    md.push('', '### Bytes on the wire per value', '', 'TLS bytes both ways (TCP payload), per value, after the first batch; one batch at a time.', '');
    const bn: string[] = Object.keys(tp.bytes[0].perValue);
    md.push(`| batch | ${bn.join(' | ')} | NGTT / HTTPS+JSON |`, `|---:|${bn.map(() => '---:').join('|')}|---:|`);
    for (const b of tp.bytes) md.push(`| ${b.batch} | ${bn.map((n) => fmt(b.perValue[n].total)).join(' | ')} | ${fmt((b.perValue.NGTT?.total ?? NaN) / (b.perValue['HTTPS+JSON']?.total ?? NaN))} |`);
    md.push('', `Connection set-up (TLS handshake + first batch), bytes: ${Object.entries(tp.bytes[0].handshake).map(([k, v]) => `${k} ${fmt(v as number)}`).join(', ')}.`, '');
    const last = tp.bytes[tp.bytes.length - 1];
    const f = chart('bytes.svg', `Bytes per value, batch ${last.batch} (lower is better)`, 'bytes/value', bn.map((n) => ({ label: n, value: last.perValue[n].total, highlight: n === 'NGTT' })));
    md.push(`![bytes per value](${f})`, '');
  }

  if (fleet) {
    md.push(
      `## Fleet on one server`,
      '',
      `${fleet.date}, node ${fleet.node}. Load average at the start: ${loadText(fleet.load?.before)}. Connect ${fleet.connectRatePerSecond}/s, idle ${fleet.idleSeconds} s (PING every ${fleet.pingMs / 1000} s), then ${fleet.ordersPerStep ?? 'one per device'} orders at ${fleet.orderRatePerSecond}/s. Largest N with order p99 < ${fleet.p99LimitMs} ms: **${fleet.largestHeld}**.`,
      '',
    );
    md.push('| devices | connected | handshakes/s | server RSS idle (MiB) | KiB/device | CPU connect | CPU idle | CPU orders | order p50 | p99 | max (ms) | ok |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const s of fleet.steps)
      md.push(
        `| ${s.devices} | ${s.connected} | ${fmt(s.handshakesPerSecond)} | ${fmt(s.rssIdleMiB)} | ${fmt(s.rssPerDeviceKiB)} | ${fmt(s.cpuConnectPercent)}% | ${fmt(s.cpuIdlePercent)}% | ${fmt(s.cpuOrdersPercent)}% | ${fmt(s.orderLatency.p50)} | ${fmt(s.orderLatency.p99)} | ${fmt(s.orderLatency.max)} | ${s.ok ? 'yes' : 'no'} |`,
      );
    if (fleet.memory?.length) {
      md.push('', '### Memory per idle mutual-TLS connection: NGTT server and mosquitto, side by side', '');
      md.push('| connections | NGTT server KiB/connection | mosquitto KiB/connection | NGTT ÷ mosquitto |', '|---:|---:|---:|---:|');
      for (const m of fleet.memory) md.push(`| ${m.connections} | ${fmt(m.ngttKiB)} | ${fmt(m.mosquittoKiB)} | ${fmt(m.ratio)} |`);
    }
    md.push('', ...fleet.notes.map((n: string) => `- ${n}`), '');
    const f = chart('fleet.svg', 'Fleet: server RSS when idle (MiB)', 'MiB', fleet.steps.map((s: any) => ({ label: `${s.devices} devices`, value: s.rssIdleMiB, highlight: s.ok })));
    md.push(`![fleet](${f})`, '');
  }

  const codecRows: string[] = [];
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
    const f = chart('codec.svg', 'Codec: decode 1 000 pathpoint values (ops/s, higher is better)', 'ops/s', rows.map((r: any) => ({ label: r.codec, value: r.decodeOps, highlight: r.codec === 'minijson' })));
    md.push(`![codec](${f})`, '');

    // README: the codec comparison, one row per document.
    const bytesOf = (doc: string, c: string) => codec.rows.find((r: any) => r.document === doc && r.codec === c)?.bytes ?? NaN;
    codecRows.push('| document | encode × msgpackr | decode × msgpackr | encode × JSON | decode × JSON | bytes vs JSON | bytes vs msgpackr |', '|---|---:|---:|---:|---:|---:|---:|');
    const med = (v: any) => fmt(typeof v === 'number' ? v : (v?.median ?? NaN));
    for (const [d, r] of Object.entries<any>(codec.ratios))
      codecRows.push(`| ${d} | ${med(r.encodeVsMsgpackr)} | ${med(r.decodeVsMsgpackr)} | ${med(r.encodeVsJson)} | ${med(r.decodeVsJson)} | ${fmt(bytesOf(d, 'minijson') / bytesOf(d, 'JSON'))} | ${fmt(bytesOf(d, 'minijson') / bytesOf(d, 'msgpackr'))} |`);
    codecRows.push('', `From ${codec.date} (\`bench/results/codec.json\`), load average ${loadText(codec.load?.before)} at the start.`);
  }

  return { resultsReadme: md.join('\n'), svgs, readmeBlocks: { summary: summary(latency, tp, fleet, codec).join('\n'), codec: codecRows.join('\n') } };
}

/** The README's headline table and the goals, from the committed results. */
function summary(latency: any, tp: any, fleet: any, codec: any): string[] {
  const out: string[] = [];
  const row = (name: string) => latency?.rows.find((r: any) => r.protocol.startsWith(name));
  const at = (batch: number) => tp?.throughput.find((t: any) => t.batch === batch);
  const bytesAt = (batch: number) => tp?.bytes.find((b: any) => b.batch === batch)?.perValue;
  const ngtt = row('NGTT');
  const mqtt = row('MQTT');
  const poll1 = row('HTTPS polling 1 s');
  const poll60 = row('HTTPS polling 60 s');
  const pq = (r: any, scale = 1, unit = '') => (r ? `${fmt(r.handler.p50 / scale)}${unit} / ${fmt(r.handler.p99 / scale)}${unit}` : 'n/a');
  const rate = (batch: number, name: string) => human(at(batch)?.median[name] ?? NaN);
  const bpv = (name: string) => [1, 1000].map((b) => fmt(bytesAt(b)?.[name]?.total ?? NaN)).join(' / ');
  out.push(
    `Latency ${latency?.date.slice(0, 10) ?? 'n/a'} (load ${loadText(latency?.load?.before)}), throughput ${tp?.date.slice(0, 10) ?? 'n/a'} (load ${loadText(tp?.load?.before)})${fullThroughput(tp) ? '' : ' — **throughput: not a full run**'}:`,
    '',
    '| | NGTT | MQTT QoS 1 (TLS) | HTTPS |',
    '|---|---:|---:|---:|',
    `| order latency p50 / p99, ms | ${pq(ngtt)} | ${pq(mqtt)} | ${pq(poll1)} (1 s polling); ${pq(poll60, 1000, ' s')} (60 s polling) |`,
    `| upload, batch 100, values/s confirmed durable (distinct batches) | ${rate(100, 'NGTT')} | ${rate(100, 'MQTT QoS 1')} | ${rate(100, 'HTTPS')} |`,
    `| upload, batch 1 000 | ${rate(1000, 'NGTT')} | ${rate(1000, 'MQTT QoS 1')} | ${rate(1000, 'HTTPS')} |`,
    `| bytes per value, batch 1 / 1 000 | ${bpv('NGTT')} | ${bpv('MQTT QoS 1')} | ${bpv('HTTPS')} (JSON bodies: ${bpv('HTTPS+JSON')}) |`,
    '',
    `The SQLite store alone (no network, its own process, distinct batches) takes ${rate(100, 'SQLite store only')} values/s at batch 100 and ${rate(1000, 'SQLite store only')} at batch 1 000.`,
  );
  const cpu = (batch: number, name: string) => fmt(at(batch)?.serverCpuMicrosPerValue?.[name] ?? NaN, 3);
  if (at(100)?.serverCpuMicrosPerValue)
    out.push(
      `Server-process CPU per value stored: NGTT ${cpu(100, 'NGTT')} µs, the store alone ${cpu(100, 'SQLite store only')} µs at batch 100; ${cpu(1000, 'NGTT')} and ${cpu(1000, 'SQLite store only')} µs at batch 1 000 (MQTT's backend ${cpu(100, 'MQTT QoS 1')} / ${cpu(1000, 'MQTT QoS 1')}, mosquitto not counted).`,
    );
  const mem = fleet?.memory?.[fleet.memory.length - 1];
  const biggest = fleet?.steps?.filter((s: any) => s.ok).pop();
  if (biggest)
    out.push(
      `One server held ${biggest.devices.toLocaleString('en-US')} idle mutual-TLS devices (≈${fmt(biggest.rssPerDeviceKiB, 0)} KiB each, ${fmt(biggest.cpuIdlePercent, 0)} % CPU with PINGs every ${fleet.pingMs / 1000} s) with an order p99 of ${fmt(biggest.orderLatency.p99, 0)} ms` +
        (mem ? `; per idle mutual-TLS connection at ${mem.connections.toLocaleString('en-US')} connections: NGTT server ${fmt(mem.ngttKiB, 0)} KiB, mosquitto ${fmt(mem.mosquittoKiB, 0)} KiB.` : '.'),
    );
  const ratio = (batch: number, k: string) => at(batch)?.ratios[k] ?? NaN;
  const goal = (name: string, value: number, text: string, met: boolean | null) => `| ${name} | ${text} | ${verdict(Number.isFinite(value) ? met : null)} |`;
  const c100 = ratio(100, 'NGTT/SQLite store only');
  const c1000 = ratio(1000, 'NGTT/SQLite store only');
  const lat = latency?.ratios?.p99VsMqtt ?? NaN;
  const memRatio = mem?.ratio ?? NaN;
  out.push('', '| goal | result | |', '|---|---|---|');
  out.push(
    goal('upload ≥ 0.8× the SQLite store alone, batch 100 / 1 000 (issue 14)', Math.min(c100, c1000), `${times(c100)} / ${times(c1000)}`, c100 >= 0.8 && c1000 >= 0.8),
    goal('order p99 ≤ 0.5× MQTT QoS 1 p99 (issue 14)', lat, times(lat), lat <= 0.5),
    goal(
      'memory per idle mutual-TLS connection ≤ 2× mosquitto, held as the fleet grows (issue 14)',
      memRatio,
      mem ? fleet.memory.map((m: any) => `${fmt(m.ratio)}× at ${m.connections.toLocaleString('en-US')}`).join(', ') : 'n/a',
      !!mem && fleet.memory.every((m: any) => m.ratio <= 2),
    ),
    goal('50 000 idle devices on one server, order p99 < 100 ms (issue 14)', fleet?.largestHeld ?? NaN, `held ${(fleet?.largestHeld ?? 0).toLocaleString('en-US')} (the largest step run)`, (fleet?.largestHeld ?? 0) >= 50_000),
    ...(codec?.goals ?? []).map((g: any) => goal(`${g.goal} (issue 14)`, g.median, times(g.median), g.met)),
    goal('order p99 ≤ MQTT QoS 1', lat, times(lat), lat <= 1),
    goal('order p99 ≥ 100× better than 1 s polling', latency?.ratios?.p99TimesBetterThanPoll1s ?? NaN, times(latency?.ratios?.p99TimesBetterThanPoll1s ?? NaN), latency?.ratios?.p99TimesBetterThanPoll1s >= 100),
    ...[100, 1000].map((b) => goal(`upload ≥ MQTT QoS 1, batch ${b}`, ratio(b, 'NGTT/MQTT QoS 1'), times(ratio(b, 'NGTT/MQTT QoS 1')), ratio(b, 'NGTT/MQTT QoS 1') >= 1)),
    ...[100, 1000].map((b) => goal(`upload ≥ 5× HTTPS, batch ${b}`, ratio(b, 'NGTT/HTTPS'), times(ratio(b, 'NGTT/HTTPS')), ratio(b, 'NGTT/HTTPS') >= 5)),
  );
  return out;
}

/** `readme` with each block's text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` replaced. */
export function spliceBlocks(readme: string, blocks: Record<string, string>): string {
  let out = readme;
  for (const [name, text] of Object.entries(blocks)) {
    const open = `<!-- bench:${name} -->`;
    const close = `<!-- /bench:${name} -->`;
    const a = out.indexOf(open);
    const b = out.indexOf(close);
    if (a < 0 || b < a) throw new Error(`README.md has no ${open} … ${close} block`);
    out = `${out.slice(0, a + open.length)}\n${text}\n${out.slice(b)}`;
  }
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { resultsReadme, svgs, readmeBlocks } = render();
  for (const [file, svg] of Object.entries(svgs)) writeFileSync(join(RESULTS_DIR, file), svg);
  writeFileSync(join(RESULTS_DIR, 'README.md'), resultsReadme);
  writeFileSync(README_FILE, spliceBlocks(readFileSync(README_FILE, 'utf8'), readmeBlocks));
  console.log(`written ${join(RESULTS_DIR, 'README.md')}, ${Object.keys(svgs).length} charts, README.md blocks ${Object.keys(readmeBlocks).join(', ')}`);
}
