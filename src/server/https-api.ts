/**
 * The HTTPS device API (spec §9) on the same CA as NGTT, in the deployed clients' conventions:
 * every success is 200 with a JSON body (the useful result, never an empty 204), every error a
 * 4xx/5xx with `{status: "<text>"}`, replies in JSON unless Accept names MiniJSON
 * (http-content.ts).
 *
 * The device is whoever its verified client certificate says; no header or body can claim
 * another identity. The one exception is opt-in: behind a TLS-terminating proxy the operator
 * names the proxies' addresses, and from those (only) the certificate in
 * `X-SSL-Client-Certificate` is verified and used (proxy-certificate.ts). A request without a
 * verified certificate gets a 403 before any body is read.
 */
import multipart from '@fastify/multipart';
import Fastify, { type FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import {
  baobProblem,
  parseBaobVersions,
  parseLogRecords,
  parsePathpointData,
  parsePathpointDeclarations,
  PayloadError,
  type WireSection,
} from '../protocol/index.js';
import { IdentityError, readDeviceIdentity } from '../pki/index.js';
import { BAOB_VERSION_HEADER, planBaobSync } from './baob-sync.js';
import type { Admission } from './admission.js';
import type { DeviceRegistry } from './device-registry.js';
import { errorOptions, installContentHandling, quietRequests, sendError, sendValue } from './http-content.js';
import type { ServerTlsOptions } from './listener.js';
import { PROXY_CERT_HEADER, ProxyCertificateError, ProxyCertificates } from './proxy-certificate.js';
import * as S from './schemas.js';
import { validationOptions } from './schemas.js';
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
  /** Largest BAOB a device may upload, bytes. */
  maxBaobBytes: number;
  /** Connection caps and handshake timeout of the port (the API closes it on close). */
  admission: Admission;
  /** Addresses / CIDR ranges of TLS-terminating proxies whose X-SSL-Client-Certificate is believed. Default none. */
  trustedProxies?: readonly string[];
}

class Forbidden extends Error {
  statusCode = 403;
}

class StoreUnavailable extends Error {
  statusCode = 503;
}

class Conflict extends Error {
  statusCode = 409;
}

class NotFound extends Error {
  statusCode = 404;
}


export function createHttpsApi(o: HttpsApiOptions) {
  const proxies = o.trustedProxies?.length ? new ProxyCertificates({ ca: o.tls.ca, trustedProxies: o.trustedProxies }) : null;
  const app = Fastify({
    // The certificate is checked per request (below), not at the handshake, so that a missing or
    // unverified one gets a 403 with a reason and proxies without a client certificate can connect.
    // Verification itself is as strict: `socket.authorized` is OpenSSL's verdict against `ca`.
    https: { ...o.tls, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2', handshakeTimeout: o.admission.limits.handshakeTimeoutMs },
    loggerInstance: o.logger,
    logController: quietRequests(),
    bodyLimit: o.bodyLimit,
    ...errorOptions(),
    ...validationOptions(),
  });
  o.admission.attach(app.server);
  app.addHook('preClose', async () => o.admission.stopAdmitting());
  app.addHook('onClose', async () => o.admission.close());
  installContentHandling(app, o.bodyLimit);
  void app.register(multipart, { limits: { fileSize: o.maxBaobBytes, files: 2, fields: 2, parts: 4, fieldSize: 64 * 1024 } });

  // One certificate check per TLS connection, not per request.
  const identities = new WeakMap<TLSSocket, string>();
  const fromSocket = (socket: TLSSocket): string => {
    let deviceId = identities.get(socket);
    if (deviceId !== undefined) return deviceId;
    const raw = socket.getPeerCertificate?.()?.raw;
    if (!raw) throw new Forbidden('a client certificate is required');
    if (!socket.authorized) throw new Forbidden(`the client certificate is not accepted: ${String(socket.authorizationError ?? 'not verified')}`);
    try {
      deviceId = readDeviceIdentity(raw).deviceId;
    } catch (e) {
      throw new Forbidden(e instanceof IdentityError ? e.message : 'unusable client certificate');
    }
    identities.set(socket, deviceId);
    return deviceId;
  };
  app.decorateRequest('deviceId', '');
  app.addHook('onRequest', async (request, reply) => {
    // A store whose database or broker is unreachable could not keep what the device sends:
    // 503, and the device keeps its data and retries with its backoff (issue #16).
    if (o.store.available?.() === false) {
      reply.header('retry-after', '10');
      throw new StoreUnavailable('storage temporarily unavailable; try again later');
    }
    const socket = request.raw.socket as TLSSocket;
    const header = request.headers[PROXY_CERT_HEADER];
    if (proxies && typeof header === 'string' && header && proxies.isTrustedProxy(socket.remoteAddress)) {
      try {
        request.deviceId = proxies.deviceId(header);
      } catch (e) {
        throw new Forbidden(e instanceof ProxyCertificateError ? e.message : 'unusable X-SSL-Client-Certificate');
      }
    } else {
      request.deviceId = fromSocket(socket);
    }
    const counters = o.registry.counters(request.deviceId);
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

  // Spec §6: the device received the message order `uuid`. The deployed client retries it, so a
  // repeat answers the same (the first receipt counts).
  app.post<{ Params: { uuid: string } }>('/v1/device/orders/message/:uuid', { schema: { params: S.messageParams } }, async (request, reply) => {
    const { uuid } = request.params;
    const receivedAt = await o.store.recordMessageReceipt(request.deviceId, uuid);
    return sendValue(request, reply, { uuid, received_at: receivedAt });
  });

  app.post('/v1/device/pathpoints', { schema: { body: S.pathpointData } }, async (request, reply) => {
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
    return sendValue(request, reply, { values_stored: series.reduce((n, s) => n + s.values.length, 0) });
  });

  // Answers the device's pathpoints as the server knows them: the client applies the storage levels.
  app.put('/v1/device/pathpoints', { schema: { body: S.pathpointDeclarations } }, async (request, reply) =>
    sendValue(request, reply, await o.store.declarePathpoints(request.deviceId, parsePathpointDeclarations(request.body))),
  );

  app.put('/v1/device/device_logs', { schema: { body: S.logRecords } }, async (request, reply) => {
    const records = parseLogRecords(request.body);
    await o.store.ingest(request.deviceId, { logs: [records] });
    o.registry.counters(request.deviceId).logRecords += records.length;
    return sendValue(request, reply, { records_stored: records.length });
  });

  app.get('/v1/device', async (request, reply) => sendValue(request, reply, await o.store.getDeviceConfig(request.deviceId)));

  // ---- BAOBs (spec §11) ----

  app.post('/v1/device/baobs', { schema: { body: S.baobVersions } }, async (request, reply) => {
    const plan = planBaobSync(await o.store.listBaobs(request.deviceId), parseBaobVersions(request.body));
    return sendValue(request, reply, { should_download: plan.download, should_upload: plan.upload, should_delete: plan.delete });
  });

  app.get<{ Params: { key: string } }>('/v1/device/baobs/:key', { schema: { params: S.deviceBaobParams } }, async (request, reply) => {
    const key = checkedKey(request.params.key);
    const baob = await o.store.getBaob(request.deviceId, key);
    if (!baob) throw new NotFound(`no BAOB ${JSON.stringify(key)}`);
    return reply.header(BAOB_VERSION_HEADER, String(baob.version)).type('application/octet-stream').send(Buffer.from(baob.data.buffer, baob.data.byteOffset, baob.data.byteLength));
  });

  app.put<{ Params: { key: string } }>('/v1/device/baobs/:key', { schema: { params: S.deviceBaobParams } }, async (request, reply) => {
    const key = checkedKey(request.params.key);
    const { data, version } = await readBaobUpload(request, o.maxBaobBytes);
    const problem = baobProblem(key, version);
    if (problem) throw new PayloadError(problem);
    const offer = await o.store.offerBaob(request.deviceId, key, data, version as number);
    if (offer.stored) return sendValue(request, reply, { key, version: offer.info.version });
    if (offer.reason === 'unknown') throw new Conflict(`the server has no BAOB ${JSON.stringify(key)}; the device should delete it`);
    return sendError(request, reply, 409, `the server holds version ${offer.current.version} of ${JSON.stringify(key)}, not older than ${version}`, 'BAOB_NOT_NEWER');
  });

  return app;
}

function checkedKey(key: string): string {
  const problem = baobProblem(key, 0);
  if (problem) throw new PayloadError(problem);
  return key;
}

/**
 * `PUT /v1/device/baobs/<key>` as the deployed client sends it (requests' `files=`): part `file`
 * holds the bytes, part `data` the JSON `{version}` (sent as a file part too; a plain field works).
 */
async function readBaobUpload(request: FastifyRequest, maxBytes: number): Promise<{ data: Buffer; version: unknown }> {
  if (!request.isMultipart()) throw new PayloadError('expected multipart/form-data with parts "file" and "data"');
  let data: Buffer | undefined;
  let meta: string | undefined;
  try {
    for await (const part of request.parts()) {
      const value = part.type === 'file' ? await part.toBuffer() : Buffer.from(String(part.value));
      if (part.fieldname === 'file') data = value;
      else if (part.fieldname === 'data') meta = value.toString('utf8');
    }
  } catch (e) {
    if ((e as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
      throw Object.assign(new Error(`BAOB larger than ${maxBytes} bytes`), { statusCode: 413, code: 'BAOB_TOO_LARGE' });
    }
    throw e;
  }
  if (!data) throw new PayloadError('multipart part "file" (the BAOB bytes) is missing');
  if (meta === undefined) throw new PayloadError('multipart part "data" (JSON {version}) is missing');
  let parsed: unknown;
  try {
    parsed = JSON.parse(meta);
  } catch {
    throw new PayloadError('multipart part "data" is not JSON');
  }
  return { data, version: (parsed as { version?: unknown } | null)?.version };
}
