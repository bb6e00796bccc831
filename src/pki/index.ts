/** Device PKI: a CA, server and device certificates (spec §2), and reading a device's identity. */
export * from './certificates.js';
export * from './identity.js';
export * from './dev-pki.js';
export { DerError } from './der.js';
