/** The reference NGTT server: NGTT over mutual TLS, the HTTPS device API, the admin API, storage. */
export { startServer, type NgttServer, type ServerOptions, type DeviceStatus } from './server.js';
export type { TlsMaterial } from './listener.js';
export type { ConnectedDevice, DeviceCounters } from './device-registry.js';
export * from './store/index.js';
