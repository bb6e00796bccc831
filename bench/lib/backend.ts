/**
 * The server side of the protocol benchmarks, run as a child process (so the device side and
 * the server side do not share one event loop): the reference NGTT server (NGTT + HTTPS) on a
 * durable SQLite store (synchronous = FULL, as shipped), an MQTT backend on the same store, and
 * a raw TLS sink. Driven by IPC messages from the benchmark; timestamps are `now()` (monotonic,
 * comparable across processes).
 *
 * MQTT backend: orders are enqueued in the same store and taken through the same OrderSource
 * as NGTT's, published QoS 1 on `ngtt/<device>/orders` (MiniJSON sections with the order id);
 * the device answers on `ngtt/<device>/acks` (the id), which settles the order in the store.
 * Data published QoS 1 on `ngtt/<device>/data` ([uint16 seq][MiniJSON]) is validated like a
 * DATA_STREAM, stored with store.ingest (what arrived together in one transaction, as the NGTT
 * server does) and only then acknowledged on `ngtt/<device>/data-ack` ([uint16 seq]).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { decode, encode } from '../../src/minijson/index.js';
import { parsePathpointData, parseSectionsStrict, type PathpointSeries } from '../../src/protocol/index.js';
import { startServer } from '../../src/server/index.js';
import { openSqliteStore, type DataBatch, type OrderSource } from '../../src/server/store/index.js';
import { BACKEND_ID, noDelay, now, type BenchPki } from './common.js';

export type BackendRequest =
  | { type: 'init'; pki: BenchPki; mqttPort: number | null }
  | { type: 'enqueue'; seq: number; deviceId: string; via: 'ngtt' | 'mqtt' }
  | { type: 'stats' }
  | { type: 'stored' }
  | { type: 'close' };

export type BackendEvent =
  | { type: 'ready'; ngttPort: number; httpsPort: number; rawPort: number; mqtt: boolean }
  | { type: 'enqueued'; seq: number; id: string; t0: number }
  | { type: 'settled'; id: string; t: number }
  | { type: 'delivered'; ids: string[]; t: number }
  | { type: 'stats'; rss: number; heapUsed: number; external: number; cpuUser: number; cpuSystem: number }
  | { type: 'stored'; batches: number; lastValues: number }
  | { type: 'closed' };

const send = (e: BackendEvent) => process.send!(e);
const sectionsFor = (seq: number) => [{ orders: [{ type: 'write', path: 'W1', value: seq }], disposition: 0 }];

async function main(init: Extract<BackendRequest, { type: 'init' }>) {
  const dir = mkdtempSync(join(tmpdir(), 'ngtt-bench-server-'));
  const store = openSqliteStore(join(dir, 'ngtt.db'));
  // A second, read-only connection: what the store really holds (committed rows), for the
  // benchmark's check that every confirmed batch was stored.
  let reader: Database.Database | null = null;
  const stored = () => {
    reader ??= new Database(join(dir, 'ngtt.db'), { readonly: true });
    const { n } = reader.prepare('SELECT count(*) AS n FROM data_batches').get() as { n: number };
    const last = reader.prepare('SELECT payload FROM data_batches ORDER BY seq DESC LIMIT 1').get() as { payload: Buffer } | undefined;
    const lastValues = last ? (decode(last.payload) as PathpointSeries[]).reduce((sum, s) => sum + s.values.length, 0) : 0;
    return { batches: n, lastValues };
  };

  // Observe the store: when an acknowledgement reaches it (NGTT and MQTT) and when a poll takes orders (HTTPS).
  const openOrderSource = store.openOrderSource.bind(store);
  store.openOrderSource = async (deviceId, options) => {
    const source = await openOrderSource(deviceId, options);
    const settle = source.settle.bind(source);
    source.settle = (id, outcome, reason) => {
      send({ type: 'settled', id, t: now() });
      return settle(id, outcome, reason);
    };
    return source;
  };
  const takeQueuedOrders = store.takeQueuedOrders.bind(store);
  store.takeQueuedOrders = async (deviceId) => {
    const t = now();
    const orders = await takeQueuedOrders(deviceId);
    if (orders.length) send({ type: 'delivered', ids: orders.map((o) => o.id), t });
    return orders;
  };

  const { ca, server: serverCert } = init.pki;
  const server = await startServer({
    tls: { ca: ca.cert, cert: serverCert.cert, key: serverCert.key },
    ngttPort: 0,
    httpsPort: 0,
    adminPort: null,
    store,
    logger: pino({ level: 'silent' }),
  });

  // Raw TLS sink: [uint32 n] then n bytes, answered with one byte once all n arrived.
  const sink = tls.createServer({ ca: ca.cert, cert: serverCert.cert, key: serverCert.key, requestCert: true, rejectUnauthorized: true });
  sink.on('secureConnection', (socket) => {
    let header = Buffer.alloc(0);
    let expected = -1;
    socket.on('data', (chunk: Buffer) => {
      let c = chunk;
      while (c.length) {
        if (expected < 0) {
          header = Buffer.concat([header, c]);
          if (header.length < 4) return;
          expected = header.readUInt32BE(0);
          c = header.subarray(4);
          header = Buffer.alloc(0);
        }
        const take = Math.min(expected, c.length);
        expected -= take;
        c = c.subarray(take);
        if (expected === 0) {
          expected = -1;
          socket.write(Buffer.of(1));
        }
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const rawPort = (sink.address() as import('node:net').AddressInfo).port;

  let mqttClient: mqtt.MqttClient | null = null;
  const sources = new Map<string, OrderSource>();
  if (init.mqttPort !== null) {
    mqttClient = await mqtt.connectAsync(`mqtts://127.0.0.1:${init.mqttPort}`, {
      ca: ca.cert,
      cert: init.pki.devices[BACKEND_ID].cert, // a client certificate of the same CA
      key: init.pki.devices[BACKEND_ID].key,
      clientId: 'ngtt-bench-backend',
      clean: true,
      reconnectPeriod: 0,
    });
    noDelay(mqttClient);
    await mqttClient.subscribeAsync({ 'ngtt/+/acks': { qos: 1 }, 'ngtt/+/data': { qos: 1 } });
    const pending = new Map<string, { seq: number; batch: DataBatch }[]>();
    let flushing = false;
    const flush = async () => {
      while (pending.size) {
        const work = [...pending];
        pending.clear();
        for (const [deviceId, entries] of work) {
          await store.ingest(deviceId, { data: entries.map((e) => e.batch) });
          for (const e of entries) {
            const ack = Buffer.alloc(2);
            ack.writeUInt16BE(e.seq);
            mqttClient!.publish(`ngtt/${deviceId}/data-ack`, ack, { qos: 1 });
          }
        }
      }
      flushing = false;
    };
    mqttClient.on('message', (topic, payload) => {
      const [, deviceId, kind] = topic.split('/');
      if (kind === 'acks') {
        void sources.get(deviceId)?.settle(payload.toString('utf8'), 'confirmed');
      } else if (kind === 'data') {
        const seq = payload.readUInt16BE(0);
        const encoded = payload.subarray(2);
        let series: PathpointSeries[];
        try {
          series = parsePathpointData(decode(encoded));
        } catch {
          return; // not expected in the benchmark
        }
        let list = pending.get(deviceId);
        if (!list) pending.set(deviceId, (list = []));
        list.push({ seq, batch: { series, encoded } });
        if (!flushing) {
          flushing = true;
          setImmediate(() => void flush());
        }
      }
    });
  }

  const mqttEnqueue = async (deviceId: string, sections: unknown): Promise<string> => {
    const id = await store.enqueueOrder(deviceId, parseSectionsStrict(sections));
    let source = sources.get(deviceId);
    if (!source) sources.set(deviceId, (source = await store.openOrderSource(deviceId, { prefetch: 4 })));
    const order = await source.next();
    if (!order) throw new Error('the order just enqueued is not there');
    const payload = Buffer.from(encode(order.sections.map((s) => ({ ...s, id: order.id }))));
    mqttClient!.publish(`ngtt/${deviceId}/orders`, payload, { qos: 1 });
    return id;
  };

  process.on('message', async (m: BackendRequest) => {
    switch (m.type) {
      case 'enqueue': {
        const t0 = now();
        const id = m.via === 'mqtt' ? await mqttEnqueue(m.deviceId, sectionsFor(m.seq)) : await server.enqueueOrder(m.deviceId, sectionsFor(m.seq));
        send({ type: 'enqueued', seq: m.seq, id, t0 });
        return;
      }
      case 'stats': {
        const cpu = process.cpuUsage();
        const mem = process.memoryUsage();
        send({ type: 'stats', rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, cpuUser: cpu.user / 1000, cpuSystem: cpu.system / 1000 });
        return;
      }
      case 'stored':
        send({ type: 'stored', ...stored() });
        return;
      case 'close':
        reader?.close();
        for (const s of sources.values()) await s.close();
        await mqttClient?.endAsync();
        sink.close();
        await server.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
        send({ type: 'closed' });
        process.disconnect();
        return;
    }
  });
  send({ type: 'ready', ngttPort: server.ngttPort, httpsPort: server.httpsPort, rawPort, mqtt: mqttClient !== null });
}

// The benchmark is gone (crashed, interrupted): do not linger.
process.once('disconnect', () => process.exit(0));
process.once('message', (m: BackendRequest) => {
  if (m.type === 'init') void main(m).catch((e) => (console.error(e), process.exit(1)));
});
