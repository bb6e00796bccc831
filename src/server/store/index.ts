export * from './types.js';
export { DEFAULT_DEDUPE_WINDOW, LocalStore, type Tables, type UploadRow } from './local-store.js';
export { createMemoryStore, type MemoryStoreOptions } from './memory-store.js';
export { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
export { Availability } from './availability.js';
