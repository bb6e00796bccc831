/** NGTT wire protocol: frames, the streaming decoder, transaction ids and payload shapes. */
export * from './frames.js';
export * from './frame-decoder.js';
export * from './tids.js';
export * from './errors.js';
export * from './messages.js';
