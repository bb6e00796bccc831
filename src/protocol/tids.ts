import { ProtocolError } from './errors.js';

export const MIN_TID = 1;
export const MAX_TID = 0x7fff;

/**
 * Device-allocated transaction ids (spec §4): 1..0x7FFF, unique among outstanding requests.
 * Allocation walks forward from the last id handed out, so a just-freed id is not reused at
 * once (a late reply to it is then easier to tell apart).
 *
 * The ids in use are a Set, not a 32 KiB bitmap: the server keeps one allocator per connection
 * with a handful of orders in flight, and at fleet scale the bitmap was a third of an idle
 * connection's memory (bench/results, fleet).
 */
export class TidAllocator {
  private readonly used = new Set<number>();
  private cursor = MAX_TID;

  /** How many tids are in use. */
  get inUse(): number {
    return this.used.size;
  }

  /** How many more can be allocated. */
  get available(): number {
    return MAX_TID - MIN_TID + 1 - this.used.size;
  }

  allocate(): number {
    if (this.available === 0) throw new ProtocolError(`all ${MAX_TID} transaction ids are in use`, 'TIDS_EXHAUSTED');
    let tid = this.cursor;
    do tid = tid >= MAX_TID ? MIN_TID : tid + 1;
    while (this.used.has(tid));
    this.used.add(tid);
    this.cursor = tid;
    return tid;
  }

  isInUse(tid: number): boolean {
    return this.used.has(tid);
  }

  /** Frees a tid; returns false if it was not in use (a reply nobody waits for). */
  free(tid: number): boolean {
    return this.used.delete(tid);
  }

  /** Frees every tid (the connection is gone). */
  reset(): void {
    this.used.clear();
  }
}
