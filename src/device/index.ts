/** The NGTT device: the full runtime (NgttDevice), NGTT alone (NgttConnection), and their building blocks. */
export {
  NgttDevice,
  DEFAULT_HTTPS_PORT,
  DEFAULT_CLOSE_TIMEOUT_MS,
  deviceIdOf,
  toSeries,
  type NgttDeviceOptions,
  type NgttDeviceEvents,
  type DeviceOrderEvent,
  type DeviceStatus,
  type ConnectionStateName,
  type Transport,
  type PathpointReading,
  type PushData,
  type DeviceFault,
  type FaultSource,
  type WaitOptions,
  type DeviceBaobs,
  type DeviceBaobSyncResult,
  type DeviceWatcher,
} from './ngtt-device.js';
export type { DeviceBaob, DeviceBaobInfo } from './baob-store.js';
export type { DeviceBaobEvent } from './baob-io.js';
export { NgttConnection, DataStreamRejectedError, type NgttConnectionOptions, type NgttConnectionEvents, type NgttConnectionFault, type NgttOrder } from './ngtt-connection.js';
export { PathpointError, type OrderHandlers, type HandlerContext } from './executor.js';
export { HttpError, DeviceHttpsClient } from './https-client.js';
export type { DeviceConfig, CultureContext } from '../protocol/index.js';
export { ConnectionClosedError, DEFAULT_NGTT_PORT } from './tls-transport.js';
export type { TlsMaterial, DeviceTlsOptions } from './tls-material.js';
export { SqliteSpool, MemorySpool, SpoolFullError, SpoolStorageError, SpoolClosedError, type Spool, type SpoolBatch } from './spool.js';
export type { SharedDatabase } from './shared-database.js';
export { LogShipper } from './log-shipper.js';
