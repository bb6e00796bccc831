/**
 * BAOB synchronisation (spec §11), the same for HTTPS (`POST /v1/device/baobs`) and NGTT
 * (SYNC_BAOB_REQUEST): the higher version wins; a BAOB the device holds and the server does not
 * is deleted on the device; the device uploads only what the server holds at a lower version.
 */
import type { BaobInfo } from './store/index.js';

/** The header the deployed client reads a downloaded BAOB's version from. */
export const BAOB_VERSION_HEADER = 'X-SMOK-BAOB-Version';

export interface BaobSyncPlan {
  /** The server's version is newer, or the device lacks the BAOB. */
  download: string[];
  /** The device's version is newer. */
  upload: string[];
  /** The server has no such BAOB (never had, or deleted it). */
  delete: string[];
}

/** What the device should do, given the server's BAOBs and the device's versions by key. */
export function planBaobSync(server: BaobInfo[], device: ReadonlyMap<string, number>): BaobSyncPlan {
  const plan: BaobSyncPlan = { download: [], upload: [], delete: [] };
  const held = new Map(server.map((b) => [b.key, b.version]));
  for (const [key, version] of device) {
    const ours = held.get(key);
    if (ours === undefined) plan.delete.push(key);
    else if (ours > version) plan.download.push(key);
    else if (ours < version) plan.upload.push(key);
  }
  for (const b of server) if (!device.has(b.key)) plan.download.push(b.key);
  return plan;
}
