/** The device's SQLite file, shared by the spool and the executed-orders store. */
import Database from 'better-sqlite3';

export type DeviceDatabase = Database.Database;

/**
 * Opens (creating) the device database. WAL lets readers and the single writer go on together;
 * synchronous=FULL makes every commit fsync the WAL, so whatever a commit acknowledged survives
 * a process kill *and* a power cut (NORMAL would survive a kill only: in WAL mode it syncs at
 * checkpoints, not commits). Devices lose power, and the spool groups many values per commit,
 * so the fsync cost is paid once per group, not per value.
 */
export function openDeviceDatabase(path: string): DeviceDatabase {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  return db;
}
