/**
 * The connection machine's `socket` actor over a real NgttSocket: one TLS connection per
 * invocation. Policy (keepalive, backoff, what to send) stays in machines/connection.ts.
 */
import { fromCallback } from 'xstate';
import type { OutFrame } from '../../machines/common.js';
import type { SentFrame, SocketCommand, SocketEvent, SocketInput } from '../../machines/connection.js';

type SocketFrame = Extract<SocketEvent, { type: 'SOCKET.FRAMES' }>['frames'][number];
import { decode } from '../minijson/index.js';
import { frameTypeName } from '../protocol/index.js';
import { NgttSocket, type Flushed, type NgttConnectOptions } from './tls-transport.js';

/** Byte counters kept across connections (the device's status). */
export interface TrafficCounters {
  bytesSent: number;
  bytesReceived: number;
}

export interface SocketActorOptions {
  connect: NgttConnectOptions;
  counters?: TrafficCounters;
  /** Told about frames whose payload is not MiniJSON (they are handed on with payload undefined). */
  onBadPayload?: (type: number, error: Error) => void;
  /** Told about a frame that could not be encoded (it is dropped). */
  onBadFrame?: (type: number, error: Error) => void;
  /** Told why a connection failed or ended, with the error itself (the machine gets its message). */
  onSocketError?: (error: Error) => void;
}

/** Sends `encoded` as is, else `payload` as MiniJSON, else an empty payload (see OutFrame). Throws when the payload cannot be encoded (nothing is sent then). */
export function sendOutFrame(socket: NgttSocket, frame: OutFrame, flushed?: Flushed): void {
  if (frame.encoded) socket.sendEncoded(frame.tid, frame.type, frame.encoded, flushed);
  else if (frame.payload !== undefined) socket.sendValue(frame.tid, frame.type, frame.payload, flushed);
  else socket.sendEmpty(frame.tid, frame.type, flushed);
}

/** Decodes a frame payload; undefined when empty. Throws on bad MiniJSON. */
export function decodePayload(payload: Buffer): unknown {
  return payload.length === 0 ? undefined : decode(payload);
}

/**
 * One TLS connection per invocation. Backpressure: frames are written while the socket takes
 * them; once it needs to drain, they wait here until it has (the senders' windows bound how
 * many). SOCKET.SENT is reported when frames were flushed to the kernel, not when queued.
 * Frames received in one read go to the machine as one SOCKET.FRAMES, and flushes within one
 * tick as one SOCKET.SENT: a busy link costs an event per group, not per frame.
 */
export function socketActor(options: SocketActorOptions) {
  const counters = options.counters ?? { bytesSent: 0, bytesReceived: 0 };
  return fromCallback<SocketCommand, SocketInput>(({ input, sendBack, receive }) => {
    let socket: NgttSocket | undefined;
    let stopped = false;
    let closeRequested = false;
    const waiting: OutFrame[] = [];
    const giveUp = new AbortController();
    const report = (event: SocketEvent) => {
      if (!stopped) sendBack(event);
    };
    let received: SocketFrame[] = [];
    let flushed: { frames: SentFrame[]; bytes: number } | undefined;
    const reportReceived = () => {
      if (received.length === 0) return;
      const frames = received;
      received = [];
      report({ type: 'SOCKET.FRAMES', frames });
    };
    const reportFlushed = () => {
      if (!flushed) return;
      const { frames, bytes } = flushed;
      flushed = undefined;
      report({ type: 'SOCKET.SENT', frames, bytes });
    };

    const write = (s: NgttSocket, frame: OutFrame) => {
      const before = s.bytesSent;
      let bytes = 0;
      try {
        sendOutFrame(s, frame, (error) => {
          if (error) return;
          if (!flushed) {
            flushed = { frames: [], bytes: 0 };
            queueMicrotask(reportFlushed);
          }
          flushed.frames.push({ type: frame.type, tid: frame.tid });
          flushed.bytes += bytes;
        });
      } catch (error) {
        options.onBadFrame?.(frame.type, error as Error);
        return;
      }
      bytes = s.bytesSent - before;
      counters.bytesSent += bytes;
    };
    /** Writes what waits while the socket takes it (`all`: regardless, before closing). */
    const pump = (all = false) => {
      const s = socket;
      if (!s) return;
      while (waiting.length && !s.closed && (all || !s.needsDrain)) write(s, waiting.shift()!);
    };

    NgttSocket.connect({ ...options.connect, connectTimeoutMs: input.connectTimeoutMs, signal: giveUp.signal }).then(
      (s) => {
        if (stopped) return s.destroy();
        socket = s;
        s.on('frame', (frame) => {
          counters.bytesReceived += frame.payload.length + 8;
          let payload: unknown;
          try {
            payload = decodePayload(frame.payload);
          } catch (error) {
            options.onBadPayload?.(frame.type, new Error(`${frameTypeName(frame.type)} payload is not MiniJSON: ${(error as Error).message}`));
          }
          if (received.length === 0) queueMicrotask(reportReceived);
          received.push({ type: frame.type, tid: frame.tid, payload });
        });
        s.on('drain', () => pump());
        s.on('close', (error) => {
          if (error && !stopped) options.onSocketError?.(error);
          reportReceived(); // what came before the close, first
          reportFlushed();
          report({ type: 'SOCKET.CLOSED', error: error?.message });
        });
        report({ type: 'SOCKET.OPEN' });
        if (closeRequested) {
          pump(true);
          void s.close();
        } else pump();
      },
      (error: Error) => {
        if (stopped) return;
        options.onSocketError?.(error);
        report({ type: 'SOCKET.CLOSED', error: error.message });
      },
    );

    receive((command) => {
      if (command.type === 'CLOSE') {
        closeRequested = true;
        if (socket) {
          pump(true);
          void socket.close();
        }
        return;
      }
      waiting.push(command.frame);
      pump();
    });

    return () => {
      stopped = true;
      giveUp.abort();
      socket?.destroy();
    };
  });
}
