/** The reference NGTT server: NGTT over mutual TLS, the HTTPS device API, the admin API, storage. */
export { startServer, ServerConfigError, type NgttServer, type ServerOptions, type ConnectedDeviceStatus } from './server.js';
export { DEFAULT_ADMISSION, type AdmissionLimits, type ListenerStats, type RefusalReason, type ServerTlsOptions } from './listener.js';
export type { ConnectedDevice, DeviceCounters } from './device-registry.js';
export * from './store/index.js';
