/**
 * The HTTPS device API (spec §9) on the same CA as NGTT. The device is whoever the verified
 * client certificate says; no header or body can claim another identity.
 */
import Fastify from 'fastify';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { parseLogRecords, parsePathpointData, parsePathpointDeclarations, type WireSection } from '../protocol/index.js';
import { IdentityError, readDeviceIdentity } from '../pki/index.js';
import type { DeviceRegistry } from './device-registry.js';
import { installContentHandling, quietRequests, sendValue } from './http-content.js';
import type { ServerTlsOptions } from './listener.js';
import type { Store } from './store/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** From the TLS client certificate (set by the onRequest hook of the device API). */
    deviceId: string;
  }
}

export interface HttpsApiOptions {
  tls: ServerTlsOptions;
  store: Store;
  registry: DeviceRegistry;
  logger: Logger;
  bodyLimit: number;
  /** A client that has not finished its TLS handshake by then is disconnected. */
  handshakeTimeoutMs: number;
}

class Forbidden extends Error {
  statusCode = 403;
}

export function createHttpsApi(o: HttpsApiOptions) {
  const app = Fastify({
    https: { ...o.tls, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', handshakeTimeout: o.handshakeTimeoutMs },
    loggerInstance: o.logger,
    logController: quietRequests(),
    bodyLimit: o.bodyLimit,
  });
  // Node reports a handshake timeout or failure here without closing the socket (see listener.ts).
  app.server.on('tlsClientError', (_err: Error, socket: TLSSocket) => socket.destroy());
  installContentHandling(app);

  // One certificate parse per TLS connection, not per request.
  const identities = new WeakMap<TLSSocket, string>();
  app.decorateRequest('deviceId', '');
  app.addHook('onRequest', async (request) => {
    const socket = request.raw.socket as TLSSocket;
    let deviceId = identities.get(socket);
    if (deviceId === undefined) {
      const raw = socket.getPeerCertificate?.()?.raw;
      if (!socket.authorized || !raw) throw new Forbidden('a verified client certificate is required');
      try {
        deviceId = readDeviceIdentity(raw).deviceId;
      } catch (e) {
        throw new Forbidden(e instanceof IdentityError ? e.message : 'unusable client certificate');
      }
      identities.set(socket, deviceId);
    }
    request.deviceId = deviceId;
    const counters = o.registry.counters(deviceId);
    counters.httpRequests++;
    counters.lastSeen = Date.now();
  });

  app.post('/v1/device/orders', async (request, reply) => {
    // HTTP semantics (spec §9): what the poll returns counts as delivered at once.
    const orders = await o.store.takeQueuedOrders(request.deviceId);
    o.registry.counters(request.deviceId).ordersDelivered += orders.length;
    const sections: WireSection[] = orders.flatMap((order) => order.sections.map((s) => ({ ...s, id: order.id })));
    return sendValue(request, reply, sections);
  });

  app.post('/v1/device/pathpoints', async (request, reply) => {
    const counters = o.registry.counters(request.deviceId);
    let series;
    try {
      series = parsePathpointData(request.body);
    } catch (e) {
      counters.dataBatchesRejected++;
      throw e;
    }
    await o.store.ingest(request.deviceId, { data: [{ series }] });
    counters.dataBatchesConfirmed++;
    return reply.code(204).send();
  });

  app.put('/v1/device/pathpoints', async (request, reply) => {
    await o.store.declarePathpoints(request.deviceId, parsePathpointDeclarations(request.body));
    return reply.code(204).send();
  });

  app.put('/v1/device/device_logs', async (request, reply) => {
    const records = parseLogRecords(request.body);
    await o.store.ingest(request.deviceId, { logs: [records] });
    o.registry.counters(request.deviceId).logRecords += records.length;
    return reply.code(204).send();
  });

  app.get('/v1/device', async (request, reply) => sendValue(request, reply, await o.store.getDeviceConfig(request.deviceId)));

  return app;
}
