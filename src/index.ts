/** ngtt: the NGTT device runtime, the MiniJSON codec and the wire protocol. The server is `ngtt/server`, the machines `ngtt/machines`. */
export * from './device/index.js';
export { encode, decode, MiniJSONError } from './minijson/index.js';
export { FrameType, type LogRecord, type PathpointDeclaration, type PathpointScalar, type PathpointSeries, type PathpointValue, type Section, type Order } from './protocol/index.js';
