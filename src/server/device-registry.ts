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
  close(reason: string): Promise<void>;
}

export interface ConnectedDevice {
  deviceId: string;
  /** ISO time the current connection was established. */
  since: string;
  remoteAddress: string;
}

const newCounters = (): DeviceCounters => ({
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

export class DeviceRegistry {
  private readonly live = new Map<string, LiveSession>();
  private readonly handovers = new Map<string, Promise<void>>();
  private readonly countersByDevice = new Map<string, DeviceCounters>();

  counters(deviceId: string): DeviceCounters {
    let c = this.countersByDevice.get(deviceId);
    if (!c) this.countersByDevice.set(deviceId, (c = newCounters()));
    return c;
  }

  allCounters(): Record<string, DeviceCounters> {
    return Object.fromEntries(this.countersByDevice);
  }

  connected(): ConnectedDevice[] {
    return [...this.live.values()].map((s) => ({ deviceId: s.deviceId, since: new Date(s.connectedAt).toISOString(), remoteAddress: s.remoteAddress }));
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

  /** The session's connection is gone. */
  remove(session: LiveSession): void {
    if (this.live.get(session.deviceId) === session) this.live.delete(session.deviceId);
  }

  sessions(): LiveSession[] {
    return [...this.live.values()];
  }
}
