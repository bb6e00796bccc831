/**
 * A device's side of BAOB sync (spec §11) at protocol level, for the server tests: a local store
 * of key → (version, bytes) and the two ways to sync it. Over HTTPS it does what the original
 * client's `_sync_baob` does (POST the versions; delete, download, upload as told); over NGTT it
 * asks with SYNC_BAOB_REQUEST and moves the bytes over HTTPS. Not the device runtime's BAOB API
 * (that comes with the device runtime); just enough to drive every route and frame.
 */
import { decode } from '../../src/minijson/index.js';
import { FrameType } from '../../src/protocol/index.js';
import type { RawDevice } from './raw-device.js';
import type { SmokHttpClient } from './smok-http.js';

export interface LocalBaob {
  version: number;
  data: Buffer;
}

export interface SyncResult {
  downloaded: string[];
  uploaded: string[];
  deleted: string[];
}

export class BaobDevice {
  constructor(
    private readonly http: SmokHttpClient,
    /** The device's BAOBs: pass one to carry them over to another connection. */
    readonly baobs = new Map<string, LocalBaob>(),
  ) {}

  /** A local change, as the original client's `BAOB.value = …`: version one up (0 for a new key). */
  set(key: string, data: string | Buffer): void {
    this.baobs.set(key, { version: (this.baobs.get(key)?.version ?? -1) + 1, data: Buffer.from(data) });
  }

  text(key: string): string | undefined {
    return this.baobs.get(key)?.data.toString();
  }

  versions(): Record<string, number> {
    return Object.fromEntries([...this.baobs].map(([k, b]) => [k, b.version]).sort());
  }

  async syncHttps(): Promise<SyncResult> {
    const plan = (await this.http.post('/v1/device/baobs', { json: [...this.baobs].map(([key, b]) => ({ key, version: b.version })) })) as {
      should_download: string[];
      should_upload: string[];
      should_delete: string[];
    };
    return this.apply(plan.should_download, plan.should_upload, plan.should_delete);
  }

  async syncNgtt(device: RawDevice, tid: number): Promise<SyncResult> {
    device.send(tid, FrameType.SYNC_BAOB_REQUEST, Object.fromEntries([...this.baobs].map(([k, b]) => [k, b.version])));
    const response = decode((await device.takeType(FrameType.SYNC_BAOB_RESPONSE, tid)).payload) as { download: string[]; upload: string[]; delete?: string[] };
    return this.apply(response.download, response.upload, response.delete ?? []);
  }

  private async apply(download: string[], upload: string[], remove: string[]): Promise<SyncResult> {
    for (const key of remove) this.baobs.delete(key);
    for (const key of download) {
      const [bytes, headers] = (await this.http.get(`/v1/device/baobs/${key}`, { directResponse: true })) as [Buffer, Record<string, string>];
      this.baobs.set(key, { version: Number.parseInt(headers['x-smok-baob-version'], 10), data: bytes });
    }
    for (const key of upload) {
      const b = this.baobs.get(key)!;
      await this.http.put(`/v1/device/baobs/${key}`, { files: { file: b.data, data: Buffer.from(JSON.stringify({ version: b.version })) } });
    }
    return { downloaded: download, uploaded: upload, deleted: remove };
  }
}
