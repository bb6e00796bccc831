import { ProtocolError } from './errors.js';

export const MIN_TID = 1;
export const MAX_TID = 0x7fff;

/**
 * Device-allocated transaction ids (spec §4): 1..0x7FFF, unique among outstanding requests.
 * Allocation walks forward from the last id handed out, so a just-freed id is not reused at
 * once (a late reply to it is then easier to tell apart).
 */
export class TidAllocator {
  private readonly used = new Uint8Array(MAX_TID + 1);
  private cursor = MAX_TID;
  private count = 0;

  /** How many tids are in use. */
  get inUse(): number {
    return this.count;
  }

  /** How many more can be allocated. */
  get available(): number {
    return MAX_TID - MIN_TID + 1 - this.count;
  }

  allocate(): number {
    if (this.available === 0) throw new ProtocolError(`all ${MAX_TID} transaction ids are in use`, 'TIDS_EXHAUSTED');
    let tid = this.cursor;
    do tid = tid >= MAX_TID ? MIN_TID : tid + 1;
    while (this.used[tid]);
    this.used[tid] = 1;
    this.cursor = tid;
    this.count++;
    return tid;
  }

  isInUse(tid: number): boolean {
    return tid >= MIN_TID && tid <= MAX_TID && this.used[tid] === 1;
  }

  /** Frees a tid; returns false if it was not in use (a reply nobody waits for). */
  free(tid: number): boolean {
    if (!this.isInUse(tid)) return false;
    this.used[tid] = 0;
    this.count--;
    return true;
  }

  /** Frees every tid (the connection is gone). */
  reset(): void {
    this.used.fill(0);
    this.count = 0;
  }
}
