/**
 * Which devices are connected over NGTT, since when, and per-device counters (for the admin
 * API). Also serialises connection hand-over: a device's new connection is served only after
 * its previous one is closed and its unsettled orders are requeued (spec §5; no order is ever
 * held by two live connections).
 */
export interface DeviceCounters {
  connections: number;
  ordersSent: number;
  ordersConfirmed: number;
  ordersRejected: number;
  /** Orders handed out by an HTTPS poll (settled at once, spec §9). */
  ordersDelivered: number;
  dataBatchesConfirmed: number;
  dataBatchesRejected: number;
  logRecords: number;
  logBatchesDropped: number;
  pings: number;
  protocolErrors: number;
  httpRequests: number;
  /** Unix ms of the last frame or request from the device. */
  lastSeen: number | null;
}

export interface LiveSession {
  readonly deviceId: string;
  readonly connectedAt: number;
  readonly remoteAddress: string;
  /** Closes the connection; resolves once its orders are back in the queue. */
  close(reason: string, options?: { drainLogsMs?: number }): Promise<void>;
}

export interface ConnectedDevice {
  deviceId: string;
  /** ISO time the current connection was established. */
  since: string;
  remoteAddress: string;
}

export const newCounters = (): DeviceCounters => ({
  connections: 0,
  ordersSent: 0,
  ordersConfirmed: 0,
  ordersRejected: 0,
  ordersDelivered: 0,
  dataBatchesConfirmed: 0,
  dataBatchesRejected: 0,
  logRecords: 0,
  logBatchesDropped: 0,
  pings: 0,
  protocolErrors: 0,
  httpRequests: 0,
  lastSeen: null,
});

const describeConnection = (s: LiveSession): ConnectedDevice => ({ deviceId: s.deviceId, since: new Date(s.connectedAt).toISOString(), remoteAddress: s.remoteAddress });

type NumericCounter = Exclude<keyof DeviceCounters, 'lastSeen'>;
const NUMERIC_COUNTERS = Object.keys(newCounters()).filter((k) => k !== 'lastSeen') as NumericCounter[];

export class DeviceRegistry {
  private readonly live = new Map<string, LiveSession>();
  private readonly handovers = new Map<string, Promise<void>>();
  private readonly countersByDevice = new Map<string, DeviceCounters>();
  /** The counters of evicted devices, summed, so that totals() never goes down. */
  private readonly retired = newCounters();

  /** The device's counters, created on first use: only for a device that has authenticated. */
  counters(deviceId: string): DeviceCounters {
    let c = this.countersByDevice.get(deviceId);
    if (!c) this.countersByDevice.set(deviceId, (c = newCounters()));
    return c;
  }

  /** The device's counters if it has any; never creates them (lookups by the operator). */
  peekCounters(deviceId: string): DeviceCounters | undefined {
    return this.countersByDevice.get(deviceId);
  }

  allCounters(): ReadonlyMap<string, DeviceCounters> {
    return this.countersByDevice;
  }

  /** Every device's counters summed, evicted ones included (for metrics). */
  totals(): DeviceCounters {
    const sum = { ...this.retired };
    for (const c of this.countersByDevice.values()) for (const k of NUMERIC_COUNTERS) sum[k] += c[k];
    return sum;
  }

  /**
   * Forgets the counters of devices that are not connected and were last seen before `cutoff`
   * (Unix ms): what keeps per-device state bounded as devices come and go.
   */
  evictIdle(cutoff: number): number {
    let evicted = 0;
    for (const [deviceId, c] of this.countersByDevice) {
      if (this.live.has(deviceId) || this.handovers.has(deviceId) || (c.lastSeen ?? 0) >= cutoff) continue;
      for (const k of NUMERIC_COUNTERS) this.retired[k] += c[k];
      this.countersByDevice.delete(deviceId);
      evicted++;
    }
    return evicted;
  }

  connected(): ConnectedDevice[] {
    return [...this.live.values()].map(describeConnection);
  }

  /** The device's current connection, or undefined. */
  connection(deviceId: string): ConnectedDevice | undefined {
    const session = this.live.get(deviceId);
    return session && describeConnection(session);
  }

  get connectedCount(): number {
    return this.live.size;
  }

  isConnected(deviceId: string): boolean {
    return this.live.has(deviceId);
  }

  /**
   * Runs `start` for a new connection of the device once any previous connection is closed.
   * Hand-overs of one device run one after another; `start` returns the new live session
   * (or null if the new connection died meanwhile).
   */
  handOver(deviceId: string, start: () => Promise<LiveSession | null>): Promise<void> {
    const previousTurn = this.handovers.get(deviceId) ?? Promise.resolve();
    const turn = previousTurn.then(async () => {
      const previous = this.live.get(deviceId);
      if (previous) await previous.close('replaced by a new connection from the same device');
      const session = await start();
      if (session) this.live.set(deviceId, session);
    });
    const settled = turn.catch(() => {});
    this.handovers.set(deviceId, settled);
    void settled.then(() => {
      if (this.handovers.get(deviceId) === settled) this.handovers.delete(deviceId);
    });
    return turn;
  }

  /** The session's connection is gone; its device's counters are kept until evicted. */
  remove(session: LiveSession): void {
    if (this.live.get(session.deviceId) === session) this.live.delete(session.deviceId);
  }

  sessions(): LiveSession[] {
    return [...this.live.values()];
  }
}
