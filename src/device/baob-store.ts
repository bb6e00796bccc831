/**
 * The device's BAOBs (spec §11), durable in the device database (the spool's file): key, bytes,
 * version. A local change bumps the version by one; what a sync brings in is written only if it
 * is still newer than what is held (a put() may have happened while the bytes travelled), and a
 * delete the server asked for only if the BAOB is still the version the server was told about.
 */
import { baobProblem } from '../protocol/index.js';
import { openDeviceDatabase, type DeviceDatabase } from './database.js';
import type { SharedDatabase } from './shared-database.js';

/** A BAOB's value as the device holds it. */
export interface DeviceBaob {
  bytes: Buffer;
  version: number;
}

export interface DeviceBaobInfo {
  key: string;
  version: number;
  /** Bytes of the value. */
  size: number;
  /** False after a local put() until the server has this version (uploaded, or downloaded from it). */
  synced: boolean;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS baobs (
  key TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  data BLOB NOT NULL,
  synced INTEGER NOT NULL     -- 0: changed here, not yet on the server
);`;

interface Row {
  key: string;
  version: number;
  data: Buffer;
  size: number;
  synced: number;
}

export class SqliteBaobStore {
  private readonly db: DeviceDatabase;
  private readonly statements;

  /** `source`: a database file path, or an open database shared with other stores (not closed by close()). */
  static open(source: string | SharedDatabase): SqliteBaobStore {
    return typeof source === 'string' ? new SqliteBaobStore(openDeviceDatabase(source), true) : new SqliteBaobStore(source as DeviceDatabase, false);
  }

  private constructor(
    db: DeviceDatabase,
    private readonly ownsDb: boolean,
  ) {
    this.db = db;
    db.exec(SCHEMA);
    this.statements = {
      get: db.prepare<[string], Pick<Row, 'data' | 'version'>>('SELECT data, version FROM baobs WHERE key = ?'),
      list: db.prepare<[], Omit<Row, 'data'>>('SELECT key, version, length(data) AS size, synced FROM baobs ORDER BY key'),
      versions: db.prepare<[], Pick<Row, 'key' | 'version'>>('SELECT key, version FROM baobs'),
      put: db.prepare<[{ key: string; data: Buffer }]>(
        'INSERT INTO baobs (key, version, data, synced) VALUES (@key, 0, @data, 0) ON CONFLICT (key) DO UPDATE SET version = version + 1, data = excluded.data, synced = 0 RETURNING version',
      ),
      storeNewer: db.prepare<[{ key: string; version: number; data: Buffer }]>(
        'INSERT INTO baobs (key, version, data, synced) VALUES (@key, @version, @data, 1) ON CONFLICT (key) DO UPDATE SET version = excluded.version, data = excluded.data, synced = 1 WHERE excluded.version > baobs.version',
      ),
      deleteAt: db.prepare<[string, number]>('DELETE FROM baobs WHERE key = ? AND version = ?'),
      markSynced: db.prepare<[string, number]>('UPDATE baobs SET synced = 1 WHERE key = ? AND version = ?'),
    };
  }

  get(key: string): DeviceBaob | undefined {
    const row = this.statements.get.get(key);
    return row && { bytes: row.data, version: row.version };
  }

  /**
   * Stores a new value: the version goes up by one (a new key starts at 0, as the deployed
   * client's do). Committed before it returns. Throws TypeError for a key that cannot name a BAOB.
   */
  put(key: string, bytes: Uint8Array | string): number {
    const problem = baobProblem(key, 0);
    if (problem) throw new TypeError(problem);
    if (typeof bytes !== 'string' && !(bytes instanceof Uint8Array)) throw new TypeError('a BAOB value is a Uint8Array (or a string, stored as UTF-8)');
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return (this.statements.put.get({ key, data }) as { version: number }).version;
  }

  list(): DeviceBaobInfo[] {
    return this.statements.list.all().map((r) => ({ key: r.key, version: r.version, size: r.size, synced: r.synced === 1 }));
  }

  /** `{key: version}`: what a sync tells the server. */
  versions(): Record<string, number> {
    return Object.fromEntries(this.statements.versions.all().map((r) => [r.key, r.version]));
  }

  /** Takes the server's value if it is newer than the one held (or none is). True when stored. */
  storeIfNewer(key: string, version: number, bytes: Buffer): boolean {
    return this.statements.storeNewer.run({ key, version, data: bytes }).changes > 0;
  }

  /** Deletes the BAOB if it is still at `version`. True when deleted. */
  deleteAt(key: string, version: number): boolean {
    return this.statements.deleteAt.run(key, version).changes > 0;
  }

  /** The server now holds `version`: synced, unless it changed here since. */
  markSynced(key: string, version: number): void {
    this.statements.markSynced.run(key, version);
  }

  close(): void {
    if (this.ownsDb) this.db.close();
  }
}
