/**
 * The order timeline: what each order was and when it passed each step, joined from the two ends
 * that know it — the server's admin API (enqueued, server state, settled) and the device's
 * `order` events (received, executing, done). Latencies are measured on one clock, which holds
 * when server and devices run in one process (the demo) or on one machine.
 *
 * NGTT: enqueued → delivered (pushed, the device received it) → executed → confirmed/rejected
 * (the server got ORDER_CONFIRM/REJECT). HTTPS: enqueued → delivered (a poll took it; the gap is
 * the poll delay) → executed; the server never hears the outcome (spec §9), so `delivered` is final.
 */
import type { DeviceOrderEvent, NgttDevice } from '../device/ngtt-device.js';
import type { Order, Section } from '../protocol/index.js';
import { adminRequest } from '../cli/admin-client.js';

export type ServerOrderState = 'queued' | 'in-flight' | 'confirmed' | 'rejected' | 'delivered';

export interface TimelineEntry {
  /** The server's order id, or `device:key` for an order that came without one. */
  id: string;
  deviceId: string;
  /** What the order was, e.g. `write W1=1037; read f2`. */
  what: string;
  via?: 'ngtt' | 'https';
  /** The device's order actor (`order-3`), once the device has it. */
  actor?: string;
  /** Unix ms of each step, once known. */
  enqueuedAt?: number;
  receivedAt?: number;
  executingAt?: number;
  doneAt?: number;
  settledAt?: number;
  outcome?: 'acked' | 'rejected';
  reason?: string;
  serverState?: ServerOrderState;
  /** The furthest step reached: queued, delivered, executing, executed, confirmed, rejected. */
  stage: string;
}

const describeOne = (o: Order): string => {
  switch (o.type) {
    case 'write':
      return `write ${o.path}=${JSON.stringify(o.value)}${o.advise === 1 ? ' (force)' : ''}`;
    case 'read':
      return `read ${o.path}`;
    case 'wait':
      return `wait ${o.time} s`;
    case 'sysctl':
      return `sysctl ${o.op_type}`;
    case 'message':
      return `message ${o.uuid.slice(0, 8)}`;
    default:
      return (o as { type?: string }).type ?? '?';
  }
};

/** Sections in a few words: orders of a section joined by `, `, sections by `; `. */
export function describeOrder(sections: readonly Section[]): string {
  return sections.map((s) => s.orders.map(describeOne).join(', ')).join('; ');
}

/** The step an entry has reached, from what both ends said. */
function stageOf(e: TimelineEntry): string {
  if (e.serverState === 'confirmed' || e.serverState === 'rejected') return e.serverState;
  if (e.outcome) return e.outcome === 'rejected' ? 'rejected' : 'executed';
  if (e.executingAt) return 'executing';
  if (e.receivedAt || e.serverState === 'delivered') return 'delivered';
  if (e.serverState === 'in-flight') return 'sent';
  return 'queued';
}

/** Settled for good: nothing more will change. */
const finished = (e: TimelineEntry) => e.serverState === 'confirmed' || e.serverState === 'rejected' || (e.serverState === 'delivered' && e.doneAt !== undefined);

interface AdminOrder {
  id: string;
  deviceId: string;
  sections: Section[];
  state: ServerOrderState;
  enqueuedAt: number;
  settledAt: number | null;
  reason: string | null;
}

export interface OrderTimelineOptions {
  /** The admin API the server state is read from (and orders sent through). */
  adminUrl?: string;
  /** Entries kept, newest first. Default 200. */
  capacity?: number;
  /** How often unsettled orders are looked up. Default 500 ms. */
  refreshMs?: number;
}

export class OrderTimeline {
  private readonly entries = new Map<string, TimelineEntry>();
  private readonly listeners = new Set<(entry: TimelineEntry) => void>();
  private readonly capacity: number;
  private readonly timer: NodeJS.Timeout | undefined;
  private refreshing = false;
  private readonly detach: (() => void)[] = [];

  constructor(private readonly options: OrderTimelineOptions = {}) {
    this.capacity = options.capacity ?? 200;
    if (options.adminUrl) {
      this.timer = setInterval(() => void this.refresh(), options.refreshMs ?? 500);
      this.timer.unref();
    }
  }

  /** Follows a device's `order` events. */
  watch(device: NgttDevice): void {
    const listener = (e: DeviceOrderEvent) => this.deviceSaid(device.deviceId, e);
    device.on('order', listener);
    this.detach.push(() => device.off('order', listener));
  }

  /** Sends an order through the admin API and follows it from its enqueueing. */
  async send(deviceId: string, sections: Section[]): Promise<TimelineEntry> {
    if (!this.options.adminUrl) throw new Error('no admin API to send orders through');
    const { id } = (await adminRequest(this.options.adminUrl, 'POST', `/v1/admin/devices/${encodeURIComponent(deviceId)}/orders`, sections)) as { id: string };
    return this.update(id, deviceId, (e) => {
      e.what = describeOrder(sections);
      e.enqueuedAt ??= Date.now();
      e.serverState ??= 'queued';
    });
  }

  /** Newest first. */
  list(limit = this.capacity): TimelineEntry[] {
    return [...this.entries.values()].reverse().slice(0, limit);
  }

  onChange(listener: (entry: TimelineEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.timer);
    for (const d of this.detach.splice(0)) d();
    this.listeners.clear();
  }

  private deviceSaid(deviceId: string, e: DeviceOrderEvent): void {
    const now = Date.now();
    this.update(e.id ?? `${deviceId}:${e.key}`, deviceId, (entry) => {
      entry.actor = e.key;
      if (e.phase === 'received') {
        entry.receivedAt ??= now;
        entry.via = e.via;
      } else if (e.phase === 'executing') {
        entry.executingAt ??= now;
      } else {
        entry.doneAt = now;
        entry.via = e.via;
        entry.outcome = e.outcome;
        entry.reason = e.reason;
      }
    });
  }

  private update(id: string, deviceId: string, change: (e: TimelineEntry) => void): TimelineEntry {
    let entry = this.entries.get(id);
    if (!entry) {
      entry = { id, deviceId, what: '…', stage: 'queued' };
      this.entries.set(id, entry);
      while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    }
    change(entry);
    entry.stage = stageOf(entry);
    for (const l of this.listeners) {
      try {
        l(entry);
      } catch {
        // A display's problem is not the timeline's.
      }
    }
    return entry;
  }

  /** Looks up, on the server, the orders not settled yet (and those whose content is not known). */
  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const now = Date.now();
      const open = [...this.entries.values()].filter((e) => !e.id.includes(':') && (!finished(e) || e.what === '…') && now - (e.enqueuedAt ?? e.receivedAt ?? now) < 120_000);
      for (const e of open) {
        let order: AdminOrder;
        try {
          order = (await adminRequest(this.options.adminUrl!, 'GET', `/v1/admin/orders/${encodeURIComponent(e.id)}`)) as AdminOrder;
        } catch {
          continue; // the server is away or does not know it (yet): next round
        }
        this.update(e.id, e.deviceId, (entry) => {
          entry.what = describeOrder(order.sections);
          entry.enqueuedAt = order.enqueuedAt;
          entry.serverState = order.state;
          entry.settledAt = order.settledAt ?? undefined;
          if (order.reason) entry.reason ??= order.reason;
        });
      }
    } finally {
      this.refreshing = false;
    }
  }
}
