/** The peer broke the framing or the protocol; the connection cannot continue. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(
    message: string,
    readonly code: 'FRAME_TOO_LARGE' | 'BAD_PAYLOAD' | 'UNKNOWN_TID' | 'TIDS_EXHAUSTED' | 'DECODER_FAILED',
  ) {
    super(message);
  }
}

/** A payload that decoded but is not of the shape its frame type requires (spec §6–§8). */
export class PayloadError extends Error {
  override name = 'PayloadError';
}
