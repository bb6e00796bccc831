/**
 * What the demo shows per device. A terminal gets a table redrawn in place; anything else (CI,
 * a pipe, a log file) gets plain lines at a slower pace, one per device.
 */
import type { DeviceStatus } from '../../device/ngtt-device.js';

export interface FleetView {
  elapsedMs: number;
  devices: (DeviceStatus & { ngttEnabled: boolean })[];
  ordersIssued: number;
  issueError?: string;
}

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const lpad = (s: string | number, n: number) => String(s).padStart(n);

function kib(bytes: number): string {
  return bytes < 10_240 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
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
  return [`NGTT demo — ${(view.elapsedMs / 1000).toFixed(0)} s — Ctrl-C to stop`, '', head, '─'.repeat(head.length), ...rows, '', footer].join('\n');
}

/** One plain line per device, for logs and CI. */
export function renderLines(view: FleetView): string {
  const t = `[${(view.elapsedMs / 1000).toFixed(1)}s]`;
  return view.devices
    .map((d) => {
      const o = d.orders;
      const v = d.values;
      return `${t} ${d.deviceId} ngtt=${d.ngttEnabled ? 'on' : 'off'} transport=${d.transport} connection=${d.connection} orders received=${o.received} executing=${o.executing} acked=${o.acked} rejected=${o.rejected} values pushed=${v.pushed} confirmed=${v.confirmed} pending=${v.pending} bytes_sent=${d.bytesSent}`;
    })
    .join('\n');
}

export class Display {
  private lastPlain = 0;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly plainEveryMs = 2000,
  ) {}

  get isTTY(): boolean {
    return this.out.isTTY === true;
  }

  update(view: FleetView): void {
    if (this.isTTY) {
      this.out.write('\x1b[H\x1b[2J' + renderTable(view) + '\n');
    } else if (view.elapsedMs - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = view.elapsedMs;
      this.out.write(renderLines(view) + '\n');
    }
  }
}
