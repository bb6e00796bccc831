/**
 * The connection machine's `socket` actor over a real NgttSocket: one TLS connection per
 * invocation. Policy (keepalive, backoff, what to send) stays in machines/connection.ts.
 */
import { fromCallback } from 'xstate';
import type { OutFrame } from '../../machines/common.js';
import type { SocketCommand, SocketEvent, SocketInput } from '../../machines/connection.js';
import { decode } from '../minijson/index.js';
import { frameTypeName } from '../protocol/index.js';
import { NgttSocket, type NgttConnectOptions } from './tls-transport.js';

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
}

/** Sends `encoded` as is, else `payload` as MiniJSON, else an empty payload (see OutFrame). Returns the bytes sent. */
export function sendOutFrame(socket: NgttSocket, frame: OutFrame): number {
  const before = socket.bytesSent;
  if (frame.encoded) socket.sendEncoded(frame.tid, frame.type, frame.encoded);
  else if (frame.payload !== undefined) socket.sendValue(frame.tid, frame.type, frame.payload);
  else socket.sendEmpty(frame.tid, frame.type);
  return socket.bytesSent - before;
}

/** Decodes a frame payload; undefined when empty. Throws on bad MiniJSON. */
export function decodePayload(payload: Buffer): unknown {
  return payload.length === 0 ? undefined : decode(payload);
}

export function socketActor(options: SocketActorOptions) {
  const counters = options.counters ?? { bytesSent: 0, bytesReceived: 0 };
  return fromCallback<SocketCommand, SocketInput>(({ sendBack, receive }) => {
    const report = (event: SocketEvent) => sendBack(event);
    let socket: NgttSocket | undefined;
    let stopped = false;
    let closeRequested = false;

    NgttSocket.connect(options.connect).then(
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
          report({ type: 'SOCKET.FRAME', frame: { type: frame.type, tid: frame.tid, payload } });
        });
        s.on('close', (error) => {
          if (!stopped) report({ type: 'SOCKET.CLOSED', error: error?.message });
        });
        report({ type: 'SOCKET.OPEN' });
        if (closeRequested) void s.close();
      },
      (error: Error) => {
        if (!stopped) report({ type: 'SOCKET.CLOSED', error: error.message });
      },
    );

    receive((command) => {
      if (command.type === 'CLOSE') {
        closeRequested = true;
        if (socket) void socket.close();
        return;
      }
      if (!socket || socket.closed) return;
      const bytes = sendOutFrame(socket, command.frame);
      counters.bytesSent += bytes;
      report({ type: 'SOCKET.SENT', frameType: command.frame.type, bytes });
    });

    return () => {
      stopped = true;
      socket?.destroy();
    };
  });
}
