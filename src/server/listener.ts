/**
 * The NGTT TLS listener (spec §2): mutual TLS against the configured CA, the device identity
 * from the verified client certificate only, then one DeviceSession per connection, handed over
 * through the DeviceRegistry so a device is served on one connection at a time.
 */
import { constants as cryptoConstants } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { readDeviceIdentity } from '../pki/index.js';
import { NGTT_STREAM_ALPN } from '../protocol/index.js';
import type { DeviceRegistry } from './device-registry.js';
import { DeviceSession } from './device-session.js';
import { Admission, type AdmissionLimits, type AdmissionStats } from './admission.js';
import { HeldLogs } from './held-logs.js';
import type { Store } from './store/index.js';

export interface ServerTlsOptions {
  ca: string | Buffer | (string | Buffer)[];
  cert: string | Buffer;
  key: string | Buffer;
}

export interface NgttListenerOptions {
  tls: ServerTlsOptions;
  host: string;
  port: number;
  store: Store;
  registry: DeviceRegistry;
  window: number;
  idleTimeoutMs: number;
  maxFrameLength: number;
  admission: AdmissionLimits;
  logger: Logger;
}

export class NgttListener {
  private readonly server: tls.Server;
  private readonly admission: Admission;
  private readonly pending = new Set<Promise<void>>();
  private readonly sockets = new Set<TLSSocket>();
  private closing = false;
  private readonly stopWatching: (() => void) | undefined;
  /** Log batches of this listener's sessions that the store could not take yet. */
  readonly heldLogs: HeldLogs;

  constructor(private readonly o: NgttListenerOptions) {
    this.heldLogs = new HeldLogs({ store: o.store, logger: o.logger.child({ component: 'held-logs' }) });
    // Refuse rather than drop (issue #16): while the store cannot keep what a device sends, the
    // device is better off holding it and retrying with its backoff.
    this.admission = new Admission(o.admission, o.logger, () => o.store.available?.() === false);
    this.server = tls.createServer({
      ...o.tls,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: o.admission.handshakeTimeoutMs,
      // A device offering it parses every frame it reads (frame-writer.ts); others offer nothing.
      ALPNProtocols: [NGTT_STREAM_ALPN],
      // No TLS session tickets: devices keep one long connection and do not resume sessions,
      // and issuing tickets made every idle connection hold ≈ 15 KiB more (bench/results, fleet).
      secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
    });
    this.admission.attach(this.server);
    this.server.on('secureConnection', (socket) => this.onConnection(socket));
    this.stopWatching = o.store.onAvailabilityChange?.((available, reason) => {
      if (available) return o.logger.info('store available again: accepting devices');
      o.logger.warn({ reason }, 'store unavailable: closing device connections and refusing new ones');
      // Read what each device already sent before closing: unread LOGS of a client that sends no receipt PING would be lost.
      for (const session of o.registry.sessions()) void session.close('store unavailable', { drainLogsMs: 2_000 }).catch(() => {});
    });
  }

  /** Connections, handshakes and refusals of the NGTT port. */
  get stats(): AdmissionStats {
    return this.admission.stats;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  private onConnection(socket: TLSSocket): void {
    // A handshake that finishes while we shut down would start a session nobody closes.
    if (this.closing || this.o.store.available?.() === false) {
      socket.destroy();
      return;
    }
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    let deviceId: string;
    try {
      // rejectUnauthorized has verified the chain; the identity comes from that certificate only.
      deviceId = readDeviceIdentity(socket.getPeerCertificate().raw).deviceId;
    } catch (e) {
      this.o.logger.warn({ remote, reason: (e as Error).message }, 'client certificate without a usable DeviceID; closing');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const logger = this.o.logger.child({ deviceId, remote });
    const session = new DeviceSession({
      deviceId,
      socket,
      store: this.o.store,
      window: this.o.window,
      idleTimeoutMs: this.o.idleTimeoutMs,
      maxFrameLength: this.o.maxFrameLength,
      logger,
      counters: this.o.registry.counters(deviceId),
      heldLogs: this.heldLogs,
      onClosed: (s) => this.o.registry.remove(s),
    });
    const handover = this.o.registry
      .handOver(deviceId, () => session.start())
      .catch((e) => {
        logger.error({ err: e }, 'could not start the session');
        socket.destroy();
      });
    this.pending.add(handover);
    void handover.finally(() => this.pending.delete(handover));
  }

  /** Stops accepting, closes every connection and waits until their orders are requeued. */
  async close(): Promise<void> {
    this.closing = true;
    this.stopWatching?.();
    this.admission.stopAdmitting();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.allSettled([...this.pending]);
    await Promise.allSettled(this.o.registry.sessions().map((s) => s.close('server shutting down')));
    await this.heldLogs.close();
    for (const socket of this.sockets) socket.destroy();
    for (const socket of this.admission.sockets) socket.destroy();
    await stopped;
    this.admission.close();
  }
}
