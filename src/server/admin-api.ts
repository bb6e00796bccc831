/**
 * The operator's API, on its own plain-HTTP listener (never on the device ports): enqueue and
 * list orders, read uploaded data and logs, see connected devices and counters. Bound to
 * loopback by default; anywhere else it requires a bearer token (startServer enforces that).
 */
import Fastify from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { baobProblem, parsePathpointDeclarations, PayloadError } from '../protocol/index.js';
import { newCounters, type DeviceRegistry } from './device-registry.js';
import { errorOptions, installContentHandling, quietRequests, sendError, sendValue } from './http-content.js';
import { BAOB_VERSION_HEADER } from './baob-sync.js';
import { PROM_CLIENT_INSTALL, type ServerMetrics } from './metrics.js';
import * as S from './schemas.js';
import { validationOptions } from './schemas.js';
import type { DeviceConfigPatch, OrderState, Store } from './store/index.js';

export interface AdminApiOptions {
  store: Store;
  registry: DeviceRegistry;
  /** Null when prom-client is not installed: /metrics then says how to install it. */
  metrics: ServerMetrics | null;
  logger: Logger;
  token?: string;
  bodyLimit: number;
  /** Largest BAOB the operator may publish, bytes. */
  maxBaobBytes: number;
  /** Validates and enqueues (shared with NgttServer.enqueueOrder). */
  enqueueOrder(deviceId: string, sections: unknown): Promise<string>;
}

class Unauthorized extends Error {
  statusCode = 401;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The query's limit; the schema has checked it is a positive integer. */
const limitOf = (query: { limit?: string }): number | undefined => (query.limit === undefined ? undefined : Number(query.limit));

type DeviceParams = { Params: { deviceId: string }; Querystring: { limit?: string; state?: string; path?: string } };

export function createAdminApi(o: AdminApiOptions) {
  const app = Fastify({ loggerInstance: o.logger, logController: quietRequests(), bodyLimit: o.bodyLimit, ...errorOptions(), ...validationOptions() });
  installContentHandling(app, o.bodyLimit);
  // BAOB values are published as the raw bytes.
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  if (o.token !== undefined) {
    const expected = digest(`Bearer ${o.token}`);
    app.addHook('onRequest', async (request) => {
      // Compare digests: constant time, whatever the length of what was sent.
      if (!timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) throw new Unauthorized('missing or wrong bearer token');
    });
  }

  // Prometheus scrapes this (with the bearer token when the API has one).
  app.get('/metrics', async (request, reply) => {
    if (!o.metrics) return sendError(request, reply, 501, `metrics need prom-client, an optional peer dependency of ngtt that is not installed: ${PROM_CLIENT_INSTALL}`);
    return reply.type(o.metrics.contentType).send(await o.metrics.render());
  });

  // Never creates counters: looking a device up must not make the server hold state for it.
  const describe = (deviceId: string) => {
    const connection = o.registry.connection(deviceId);
    const counters = o.registry.peekCounters(deviceId) ?? newCounters();
    return { deviceId, connected: connection !== undefined, since: connection?.since ?? null, remoteAddress: connection?.remoteAddress ?? null, counters };
  };

  // Linear in the devices known (plus the sort): one lookup per device, no scan per device.
  app.get('/v1/admin/devices', async (request, reply) => {
    const ids = new Set(o.registry.allCounters().keys());
    for (const d of o.registry.connected()) ids.add(d.deviceId);
    return sendValue(request, reply, { devices: [...ids].sort().map(describe) });
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId', { schema: { params: S.deviceParams } }, async (request, reply) => {
    const { deviceId } = request.params;
    const [config, pathpoints] = await Promise.all([o.store.getDeviceConfig(deviceId), o.store.readPathpointDeclarations(deviceId)]);
    return sendValue(request, reply, { ...describe(deviceId), config, pathpoints });
  });

  app.put<DeviceParams>('/v1/admin/devices/:deviceId/config', { schema: { params: S.deviceParams, body: S.configPatch } }, async (request, reply) =>
    sendValue(request, reply, await o.store.updateDeviceConfig(request.params.deviceId, request.body as DeviceConfigPatch)),
  );

  app.post<DeviceParams>('/v1/admin/devices/:deviceId/orders', { schema: { params: S.deviceParams, body: S.orderSections } }, async (request, reply) => {
    // With the broker or database down the order could not be kept: say so at once (503, try
    // again) instead of waiting for the publish to time out into a 500.
    if (o.store.available?.() === false) return sendError(request, reply.header('retry-after', '10'), 503, 'the order store is unavailable; the order was not enqueued, try again later');
    const id = await o.enqueueOrder(request.params.deviceId, request.body);
    return sendValue(request, reply.code(201), { id });
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/orders', { schema: { params: S.deviceParams, querystring: S.ordersQuery } }, async (request, reply) => {
    const { state } = request.query;
    const orders = await o.store.listOrders(request.params.deviceId, { state: state as OrderState | undefined, limit: limitOf(request.query) });
    return sendValue(request, reply, { orders });
  });

  app.get<{ Params: { orderId: string } }>('/v1/admin/orders/:orderId', { schema: { params: S.orderParams } }, async (request, reply) => {
    const order = await o.store.getOrder(request.params.orderId);
    if (!order) return sendError(request, reply, 404, `no order ${request.params.orderId}`);
    return sendValue(request, reply, order);
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/data', { schema: { params: S.deviceParams, querystring: S.dataQuery } }, async (request, reply) => {
    const data = await o.store.readData(request.params.deviceId, { path: request.query.path, limit: limitOf(request.query) });
    return sendValue(request, reply, { data });
  });

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/logs', { schema: { params: S.deviceParams, querystring: S.limitQuery } }, async (request, reply) => {
    const logs = await o.store.readLogs(request.params.deviceId, { limit: limitOf(request.query) });
    return sendValue(request, reply, { logs });
  });

  app.put<DeviceParams>('/v1/admin/devices/:deviceId/pathpoints', { schema: { params: S.deviceParams, body: S.pathpointDeclarations } }, async (request, reply) =>
    sendValue(request, reply, await o.store.declarePathpoints(request.params.deviceId, parsePathpointDeclarations(request.body), { authoritative: true })),
  );

  // ---- BAOBs (spec §11): what the operator publishes, devices download ----
  type BaobParams = { Params: { deviceId: string; key: string } };
  const keyOf = (key: string) => {
    const problem = baobProblem(key, 0);
    if (problem) throw new PayloadError(problem);
    return key;
  };

  app.get<DeviceParams>('/v1/admin/devices/:deviceId/baobs', { schema: { params: S.deviceParams } }, async (request, reply) => sendValue(request, reply, { baobs: await o.store.listBaobs(request.params.deviceId) }));

  app.get<BaobParams>('/v1/admin/devices/:deviceId/baobs/:key', { schema: { params: S.baobParams } }, async (request, reply) => {
    const baob = await o.store.getBaob(request.params.deviceId, keyOf(request.params.key));
    if (!baob) return sendError(request, reply, 404, `no BAOB ${JSON.stringify(request.params.key)} for ${request.params.deviceId}`);
    return reply.header(BAOB_VERSION_HEADER, String(baob.version)).type('application/octet-stream').send(Buffer.from(baob.data.buffer, baob.data.byteOffset, baob.data.byteLength));
  });

  // Body: the new value's bytes (Content-Type application/octet-stream); the version is one above the last.
  app.put<BaobParams>('/v1/admin/devices/:deviceId/baobs/:key', { bodyLimit: o.maxBaobBytes, schema: { params: S.baobParams } }, async (request, reply) => {
    const key = keyOf(request.params.key);
    if (!Buffer.isBuffer(request.body)) throw new PayloadError('send the BAOB value as the body, Content-Type application/octet-stream');
    return sendValue(request, reply, await o.store.publishBaob(request.params.deviceId, key, request.body));
  });

  app.delete<BaobParams>('/v1/admin/devices/:deviceId/baobs/:key', { schema: { params: S.baobParams } }, async (request, reply) => {
    const deleted = await o.store.deleteBaob(request.params.deviceId, keyOf(request.params.key));
    if (!deleted) return sendError(request, reply, 404, `no BAOB ${JSON.stringify(request.params.key)} for ${request.params.deviceId}`);
    return sendValue(request, reply, { deleted: true });
  });

  return app;
}
