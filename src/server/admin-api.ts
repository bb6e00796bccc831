/**
 * The operator's API, on its own plain-HTTP listener (never on the device ports): enqueue and
 * list orders, read uploaded data and logs, see connected devices and counters. Bound to
 * loopback by default; anywhere else it requires a bearer token (startServer enforces that).
 */
import Fastify from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { PayloadError } from '../protocol/index.js';
import type { DeviceRegistry } from './device-registry.js';
import { installContentHandling, sendValue } from './http-content.js';
import { ORDER_STATES, type DeviceConfigPatch, type OrderState, type Store } from './store/index.js';

export interface AdminApiOptions {
  store: Store;
  registry: DeviceRegistry;
  logger: Logger;
  token?: string;
  bodyLimit: number;
  /** Validates and enqueues (shared with NgttServer.enqueueOrder). */
  enqueueOrder(deviceId: string, sections: unknown): Promise<string>;
}

class Unauthorized extends Error {
  statusCode = 401;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function limitOf(query: { limit?: string }): number | undefined {
  if (query.limit === undefined) return undefined;
  const n = Number(query.limit);
  if (!Number.isInteger(n) || n < 1) throw new PayloadError(`limit must be a positive integer, not ${JSON.stringify(query.limit)}`);
  return n;
}

type DeviceParams = { Params: { deviceId: string }; Querystring: { limit?: string; state?: string; path?: string } };

export function createAdminApi(o: AdminApiOptions) {
  const app = Fastify({ loggerInstance: o.logger, disableRequestLogging: true, bodyLimit: o.bodyLimit });
  installContentHandling(app);

  if (o.token !== undefined) {
    const expected = digest(`Bearer ${o.token}`);
    app.addHook('onRequest', async (request) => {
      // Compare digests: constant time, whatever the length of what was sent.
      if (!timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) throw new Unauthorized('missing or wrong bearer token');
    });
  }

  const describe = (deviceId: string) => {
    const connection = o.registry.connected().find((d) => d.deviceId === deviceId) ?? null;
    return { deviceId, connected: connection !== null, since: connection?.since ?? null, remoteAddress: connection?.remoteAddress ?? null, counters: o.registry.counters(deviceId) };
  };

  app.get('/v1/admin/devices', async (request, reply) => {
    const ids = new Set([...o.registry.connected().map((d) => d.deviceId), ...Object.keys(o.registry.allCounters())]);
    return sendValue(request, reply, { devices: [...ids].sort().map(describe) });
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId', async (request, reply) => {
    const { deviceId } = request.params;
    const [config, pathpoints] = await Promise.all([o.store.getDeviceConfig(deviceId), o.store.readPathpointDeclarations(deviceId)]);
    return sendValue(request, reply, { ...describe(deviceId), config, pathpoints });
  });

  app.put<DeviceParams>('/v1/admin/devices/:deviceId/config', async (request, reply) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new PayloadError('$: expected an object with configuration fields');
    return sendValue(request, reply, await o.store.updateDeviceConfig(request.params.deviceId, body as DeviceConfigPatch));
  });

  app.post<DeviceParams>('/v1/admin/devices/:deviceId/orders', async (request, reply) => {
    const id = await o.enqueueOrder(request.params.deviceId, request.body);
    return sendValue(request, reply.code(201), { id });
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/orders', async (request, reply) => {
    const { state } = request.query;
    if (state !== undefined && !ORDER_STATES.includes(state as OrderState)) throw new PayloadError(`state must be one of ${ORDER_STATES.join(', ')}`);
    const orders = await o.store.listOrders(request.params.deviceId, { state: state as OrderState | undefined, limit: limitOf(request.query) });
    return sendValue(request, reply, { orders });
  });

  app.get<{ Params: { orderId: string } }>('/v1/admin/orders/:orderId', async (request, reply) => {
    const order = await o.store.getOrder(request.params.orderId);
    if (!order) return sendValue(request, reply.code(404), { error: `no order ${request.params.orderId}` });
    return sendValue(request, reply, order);
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/data', async (request, reply) => {
    const data = await o.store.readData(request.params.deviceId, { path: request.query.path, limit: limitOf(request.query) });
    return sendValue(request, reply, { data });
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/logs', async (request, reply) => {
    const logs = await o.store.readLogs(request.params.deviceId, { limit: limitOf(request.query) });
    return sendValue(request, reply, { logs });
  });

  return app;
}
