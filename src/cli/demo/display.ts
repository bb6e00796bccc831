/**
 * What the demo shows per device and of the last orders. A terminal gets a table redrawn in
 * place below the intro lines (which stay visible); anything else (CI, a pipe, a log file) gets
 * plain lines at a slower pace.
 */
import type { DeviceStatus } from '../../device/ngtt-device.js';
import type { TimelineEntry } from '../../live/orders.js';

export interface FleetView {
  elapsedMs: number;
  devices: (DeviceStatus & { ngttEnabled: boolean })[];
  ordersIssued: number;
  issueError?: string;
  /** The newest orders first. */
  orders?: TimelineEntry[];
}

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const lpad = (s: string | number, n: number) => String(s).padStart(n);

function kib(bytes: number): string {
  return bytes < 10_240 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** Why an HTTPS device's "ack" column and the server's "confirmed" differ. */
export const HTTPS_NOTE = "HTTPS devices: the server learns no outcome of a polled order, so it counts it delivered, not confirmed; 'ack' is the device's count.";

const since = (from: number | undefined, to: number | undefined) => (from !== undefined && to !== undefined ? `+${Math.max(0, to - from)} ms` : '—');

/** One order: what it was, how far it got, and the latency of each step from its enqueueing. */
export function renderOrder(o: TimelineEntry): string {
  const via = o.via === 'https' ? 'HTTPS' : o.via === 'ngtt' ? 'NGTT' : '';
  const steps =
    o.via === 'https'
      ? `poll delay ${since(o.enqueuedAt, o.receivedAt)}, executed ${since(o.enqueuedAt, o.doneAt)}`
      : `delivered ${since(o.enqueuedAt, o.receivedAt)}, executed ${since(o.enqueuedAt, o.doneAt)}, confirmed ${since(o.enqueuedAt, o.serverState === 'confirmed' || o.serverState === 'rejected' ? o.settledAt : undefined)}`;
  const what = o.what.length > 40 ? `${o.what.slice(0, 39)}…` : o.what;
  return `${pad(o.deviceId, 8)} ${pad(what, 40)} ${pad(via, 5)} ${pad(o.stage, 9)} ${steps}${o.reason ? ` (${o.reason})` : ''}`;
}

/** The table for a terminal. */
export function renderTable(view: FleetView): string {
  const head = `${pad('device', 8)} ${pad('mode', 10)} ${pad('transport', 9)} ${pad('connection', 13)} ${lpad('orders rcv/run/ack/rej', 22)} ${lpad('values pushed/confirmed/pending', 31)} ${lpad('bytes up', 10)}`;
  const rows = view.devices.map((d) => {
    const o = d.orders;
    const v = d.values;
    return `${pad(d.deviceId, 8)} ${pad(d.ngttEnabled ? 'NGTT on' : 'NGTT off', 10)} ${pad(d.transport, 9)} ${pad(d.connection, 13)} ${lpad(`${o.received}/${o.executing}/${o.acked}/${o.rejected}`, 22)} ${lpad(`${v.pushed}/${v.confirmed}/${v.pending}`, 31)} ${lpad(kib(d.bytesSent), 10)}`;
  });
  const footer = `orders issued through the admin API: ${view.ordersIssued}${view.issueError ? `  (last error: ${view.issueError})` : ''}`;
  const orders = (view.orders ?? []).slice(0, 6).map(renderOrder);
  const lines = [`NGTT demo — ${(view.elapsedMs / 1000).toFixed(0)} s — Ctrl-C to stop`, '', head, '─'.repeat(head.length), ...rows, '', footer];
  if (orders.length) lines.push('', 'last orders (latency from enqueueing):', ...orders);
  if (view.devices.some((d) => !d.ngttEnabled)) lines.push('', HTTPS_NOTE);
  return lines.join('\n');
}

/** One plain line per device, and the orders settled since the last print, for logs and CI. */
export function renderLines(view: FleetView, orders: TimelineEntry[] = []): string {
  const t = `[${(view.elapsedMs / 1000).toFixed(1)}s]`;
  const devices = view.devices.map((d) => {
    const o = d.orders;
    const v = d.values;
    return `${t} ${d.deviceId} ngtt=${d.ngttEnabled ? 'on' : 'off'} transport=${d.transport} connection=${d.connection} orders received=${o.received} executing=${o.executing} acked=${o.acked} rejected=${o.rejected} values pushed=${v.pushed} confirmed=${v.confirmed} pending=${v.pending} bytes_sent=${d.bytesSent}`;
  });
  return [...devices, ...orders.map((o) => `${t} order ${renderOrder(o)}`)].join('\n');
}

export class Display {
  private lastPlain = 0;
  /** Lines of the table drawn last, to move back over (a terminal only). */
  private drawnLines = 0;
  private readonly printed = new Set<string>();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly plainEveryMs = 2000,
  ) {}

  get isTTY(): boolean {
    return this.out.isTTY === true;
  }

  update(view: FleetView): void {
    if (this.isTTY) {
      // Lines cut to the terminal's width never wrap, so moving up drawnLines lands on the table's first line.
      const width = this.out.columns || 120;
      const lines = renderTable(view)
        .split('\n')
        .map((l) => (l.length > width - 1 ? l.slice(0, width - 1) : l));
      const back = this.drawnLines ? `\x1b[${this.drawnLines}F` : '';
      this.out.write(`${back}\x1b[J${lines.join('\n')}\n`);
      this.drawnLines = lines.length;
    } else if (view.elapsedMs - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = view.elapsedMs;
      this.out.write(renderLines(view, this.newlySettled(view.orders ?? [])) + '\n');
    }
  }

  /** Orders that reached their last step since the previous print, oldest first. */
  private newlySettled(orders: TimelineEntry[]): TimelineEntry[] {
    const final = (o: TimelineEntry) => o.stage === 'confirmed' || o.stage === 'rejected' || (o.via === 'https' && o.stage === 'executed');
    const fresh = orders.filter((o) => final(o) && !this.printed.has(o.id)).reverse();
    for (const o of fresh) this.printed.add(o.id);
    if (this.printed.size > 1000) this.printed.clear();
    return fresh;
  }
}
