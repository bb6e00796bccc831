export * from './types.js';
export { LocalStore, type Tables, type UploadRow } from './local-store.js';
export { createMemoryStore } from './memory-store.js';
export { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
export { Availability } from './availability.js';
