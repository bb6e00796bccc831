/** The reference NGTT server: NGTT over mutual TLS, the HTTPS device API, the admin API, storage. */
export { startServer, ServerConfigError, type NgttServer, type ServerOptions, type ConnectedDeviceStatus } from './server.js';
export type { ServerTlsOptions } from './listener.js';
export { DEFAULT_ADMISSION, type AdmissionLimits, type AdmissionStats, type RefusalReason } from './admission.js';
export type { ConnectedDevice, DeviceCounters } from './device-registry.js';
export * from './store/index.js';
