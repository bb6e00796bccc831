/**
 * Pushes a device's orders over one NGTT connection (spec §5): nothing before FETCH_ORDERS,
 * never more than `window` unacknowledged, each ORDER with a tid unique among this connection's
 * unacknowledged orders and the order's stable id on every section. Waits for 'drain' when the
 * socket's buffer is full rather than piling orders into memory.
 */
import { encodeValueFrame, FrameType, ProtocolError, TidAllocator, type WireSection } from '../protocol/index.js';
import type { DeviceCounters } from './device-registry.js';
import type { OrderSource, Settlement } from './store/index.js';

export interface OrderDispatcherOptions {
  source: OrderSource;
  window: number;
  /** Writes a frame; false when the socket wants 'drain' before more. */
  write(frame: Buffer): boolean;
  waitForDrain(): Promise<void>;
  /** A store failure: the connection must go (its orders are requeued). */
  onFailure(error: unknown): void;
  /** The source was taken away (the device connected elsewhere): the connection must go, routinely. */
  onRevoked?(reason: Error): void;
  counters: DeviceCounters;
}

export class OrderDispatcher {
  private readonly tids = new TidAllocator();
  /** ORDER tid → order id, for this connection's unacknowledged orders. */
  private readonly unacknowledged = new Map<number, string>();
  private fetching = false;
  private pumping = false;
  private wanted = false;
  private stopped = false;

  constructor(private readonly o: OrderDispatcherOptions) {
    o.source.onAvailable(() => this.kick());
    o.source.onRevoked?.((reason) => (o.onRevoked ?? o.onFailure)(reason));
  }

  get unacknowledgedCount(): number {
    return this.unacknowledged.size;
  }

  /** FETCH_ORDERS: start pushing (repeats are harmless). */
  fetch(): void {
    this.fetching = true;
    this.kick();
  }

  /** ORDER_CONFIRM / ORDER_REJECT. Throws ProtocolError for a tid this connection does not hold. */
  async settle(tid: number, outcome: Settlement, reason?: string): Promise<void> {
    const orderId = this.unacknowledged.get(tid);
    if (orderId === undefined) throw new ProtocolError(`${outcome === 'confirmed' ? 'ORDER_CONFIRM' : 'ORDER_REJECT'} for tid ${tid}, which holds no order`, 'UNKNOWN_TID');
    this.unacknowledged.delete(tid);
    this.tids.free(tid);
    await this.o.source.settle(orderId, outcome, reason);
    if (outcome === 'confirmed') this.o.counters.ordersConfirmed++;
    else this.o.counters.ordersRejected++;
    this.kick();
  }

  /** The connection is gone: hand every unacknowledged order back to the queue. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.o.source.close();
  }

  private kick(): void {
    this.wanted = true;
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.wanted && !this.stopped) {
        this.wanted = false;
        while (this.fetching && !this.stopped && this.unacknowledged.size < this.o.window) {
          const order = await this.o.source.next();
          // Stopped meanwhile: the source was closed, and it requeued the order if it took one.
          if (!order || this.stopped) break;
          const tid = this.tids.allocate();
          this.unacknowledged.set(tid, order.id);
          const payload: WireSection[] = order.sections.map((s) => ({ ...s, id: order.id }));
          this.o.counters.ordersSent++;
          if (!this.o.write(encodeValueFrame(tid, FrameType.ORDER, payload))) await this.o.waitForDrain();
        }
      }
    } catch (e) {
      this.o.onFailure(e);
    } finally {
      this.pumping = false;
    }
  }
}
