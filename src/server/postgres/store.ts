/**
 * The server's Store in PostgreSQL (issue #16, docs/postgres.md): what a fleet must keep.
 *
 *   const store = await openPostgresStore({ url: 'postgres://ngtt@db/ngtt' });
 *   const server = await startServer({ tls, store });              // a single server, or
 *   const fleet = await openRabbitStore({ url: amqpUrl, local: store, sink: true }); // a fleet
 *
 * Every gateway and sink of a fleet uses the same database, so configuration, pathpoint
 * declarations, BAOBs and the order history are the same whichever gateway a device reaches.
 * Exactly-once ingest: each data batch and log batch is stored with a unique key
 * (device, SHA-256 of its MiniJSON as the device sent it) in the same transaction as its rows;
 * a batch sent again (lost confirm, redelivery to another sink) is a no-op.
 *
 * The order queue here (openOrderSource, takeQueuedOrders) serves a single server without a
 * broker; in a RabbitMQ fleet the broker holds the queues and this store keeps their history.
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Pool, PoolClient, PoolConfig, QueryResultRow } from 'pg';
import { decode, encode } from '../../minijson/index.js';
import type { LogRecord, PathpointDeclaration, PathpointSeries, PathpointValue, Section } from '../../protocol/index.js';
import { Availability } from '../store/availability.js';
import { checkBaob, infoOf, messageUuids, orderFromRow, OrderSources, type OrderRow } from '../store/local-store.js';
import {
  applyConfigPatch,
  DEFAULT_LIST_LIMIT,
  defaultDeviceConfig,
  type Baob,
  type BaobInfo,
  type BaobOffer,
  type DeviceConfig,
  type DeviceConfigPatch,
  type ListOptions,
  type OrderRecord,
  type OrderSource,
  type OrderState,
  type Settlement,
  type Store,
  type StoredLogRecord,
  type StoredSeries,
  type Uploads,
} from '../store/types.js';
import { migrate } from './migrate.js';

export interface PostgresLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (or set PG* environment variables). */
  url?: string;
  /** Pool settings beyond the URL (ssl, password, ...). */
  pool?: PoolConfig;
  /** Connections in the pool. Default 10. */
  maxConnections?: number;
  /** Apply missing migrations when opening. Default true. */
  migrate?: boolean;
  /**
   * This process serves the order queue from the database (a single server without RabbitMQ):
   * orders left in flight by a previous run go back to the queue at open. Default false: in a
   * fleet the broker holds the queues and several processes share the database.
   */
  ownsOrderQueue?: boolean;
  /** How often the database link is checked (the store's availability). Default 2 000 ms. */
  healthIntervalMs?: number;
  logger?: PostgresLogger;
}

/** Error codes and messages of a lost or refused database connection (not a bad query). */
const LINK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006']);
const isLinkError = (err: unknown): boolean => {
  const e = err as { code?: string; message?: string } | undefined;
  return (!!e?.code && LINK_CODES.has(e.code)) || /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(e?.message ?? '');
};

const ORDER_COLUMNS = `order_id AS id, device_id, sections, state, ngtt_ms(enqueued_at) AS enqueued_at, ngtt_ms(settled_at) AS settled_at, reason, deliveries`;

/** Sections as JSON for queries: integers beyond 2^53 become strings. */
const sectionsJson = (sections: Section[]): string => JSON.stringify(sections, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

const BAOB_INFO = `key, version, size, ngtt_ms(updated_at) AS "updatedAt"`;

export class PostgresStore implements Store {
  /** Every process of a fleet sees the same data here (RabbitStore reads it directly). */
  readonly shared = true;
  private readonly health = new Availability();
  private healthTimer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  /** In-flight orders whose requeue failed while the database was unreachable. */
  private readonly requeueLater = new Set<string>();
  private closed = false;

  private constructor(
    readonly pool: Pool,
    private readonly opts: PostgresStoreOptions,
  ) {
    // An idle client whose server went away emits here; without a listener it would crash the process.
    pool.on('error', (err) => this.linkFailed(err));
  }

  static async open(opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: 5_000,
      ...opts.pool,
    });
    const store = new PostgresStore(pool, opts);
    try {
      if (opts.migrate !== false) {
        const applied = await migrate(pool);
        if (applied.length) opts.logger?.info({ applied }, 'PostgreSQL migrations applied');
      }
      if (opts.ownsOrderQueue) await pool.query(`UPDATE orders SET state = 'queued' WHERE state = 'in-flight'`);
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    const every = opts.healthIntervalMs ?? 2_000;
    store.healthTimer = setInterval(() => void store.checkLink(), every);
    store.healthTimer.unref();
    return store;
  }

  available(): boolean {
    return this.health.available();
  }

  onAvailabilityChange(listener: (available: boolean, reason?: string) => void): () => void {
    return this.health.onChange(listener);
  }

  // ---- orders ------------------------------------------------------------------------------

  async enqueueOrder(deviceId: string, sections: Section[]): Promise<string> {
    const id = randomUUID();
    await this.recordOrder({ id, deviceId, sections, state: 'queued', enqueuedAt: Date.now(), settledAt: null, reason: null, deliveries: 0 });
    this.sources.notify(deviceId);
    return id;
  }

  openOrderSource(deviceId: string, _options: { prefetch: number }): Promise<OrderSource> {
    return this.sources.open(deviceId);
  }

  private readonly sources = new OrderSources({
    takeNextQueued: async (deviceId: string): Promise<OrderRecord | null> => {
      const { rows } = await this.q<OrderRow>(
        `UPDATE orders SET state = 'in-flight', deliveries = deliveries + 1
          WHERE order_id = (SELECT order_id FROM orders WHERE device_id = $1 AND state = 'queued' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING ${ORDER_COLUMNS}`,
        [deviceId],
      );
      return rows.length ? orderFromRow(rows[0]) : null;
    },
    settle: async (orderId: string, outcome: Settlement, reason: string | null, at: number): Promise<boolean> => {
      const r = await this.q(`UPDATE orders SET state = $2, reason = $3, settled_at = to_timestamp($4 / 1000.0) WHERE order_id = $1 AND state = 'in-flight'`, [orderId, outcome, reason, at]);
      return r.rowCount === 1;
    },
    requeue: async (orderIds: string[]): Promise<void> => {
      if (!orderIds.length) return;
      try {
        await this.q(`UPDATE orders SET state = 'queued' WHERE order_id = ANY($1) AND state = 'in-flight'`, [orderIds]);
      } catch (err) {
        // The connection closes because the database is gone: these go back once it is reachable
        // again (checkLink), not only at the next start.
        for (const id of orderIds) this.requeueLater.add(id);
        this.opts.logger?.warn({ err, orders: orderIds.length }, 'in-flight orders not requeued yet (database unreachable); retrying when it is back');
      }
    },
  });

  async takeQueuedOrders(deviceId: string): Promise<OrderRecord[]> {
    const { rows } = await this.q<OrderRow & { seq: string }>(
      `UPDATE orders SET state = 'delivered', settled_at = now(), deliveries = deliveries + 1
        WHERE device_id = $1 AND state = 'queued' RETURNING seq, ${ORDER_COLUMNS}`,
      [deviceId],
    );
    return rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(orderFromRow);
  }

  async listOrders(deviceId: string, options: ListOptions & { state?: OrderState } = {}): Promise<OrderRecord[]> {
    const { rows } = await this.q<OrderRow>(
      `SELECT * FROM (SELECT seq, ${ORDER_COLUMNS} FROM orders WHERE device_id = $1 AND ($2::text IS NULL OR state = $2)
        ORDER BY seq DESC LIMIT $3) newest ORDER BY seq`,
      [deviceId, options.state ?? null, options.limit ?? DEFAULT_LIST_LIMIT],
    );
    return this.withReceipts(deviceId, rows.map(orderFromRow));
  }

  async getOrder(orderId: string): Promise<OrderRecord | null> {
    const { rows } = await this.q<OrderRow>(`SELECT ${ORDER_COLUMNS} FROM orders WHERE order_id = $1`, [orderId]);
    return rows.length ? (await this.withReceipts(rows[0].device_id, [orderFromRow(rows[0])]))[0] : null;
  }

  /**
   * Merges what a gateway or a history event knows about an order: inserts it when unknown,
   * never moves a settled order back, keeps the earliest enqueue time and the most deliveries,
   * and fills in sections that an earlier event did not have. One statement, so concurrent
   * merges from several processes cannot lose one another.
   */
  async recordOrder(order: OrderRecord): Promise<void> {
    const newer = `(ngtt_order_rank(EXCLUDED.state) > ngtt_order_rank(orders.state) OR (ngtt_order_rank(EXCLUDED.state) = ngtt_order_rank(orders.state) AND ngtt_order_rank(EXCLUDED.state) < 2))`;
    await this.q(
      `INSERT INTO orders (order_id, device_id, sections, sections_json, state, enqueued_at, settled_at, reason, deliveries)
       VALUES ($1, $2, $3, $4, $5, to_timestamp($6 / 1000.0), to_timestamp($7 / 1000.0), $8, $9)
       ON CONFLICT (order_id) DO UPDATE SET
         state = CASE WHEN ${newer} THEN EXCLUDED.state ELSE orders.state END,
         settled_at = CASE WHEN ${newer} THEN EXCLUDED.settled_at ELSE orders.settled_at END,
         reason = CASE WHEN ${newer} THEN EXCLUDED.reason ELSE orders.reason END,
         enqueued_at = LEAST(orders.enqueued_at, EXCLUDED.enqueued_at),
         deliveries = GREATEST(orders.deliveries, EXCLUDED.deliveries),
         sections = CASE WHEN orders.sections_json = '[]'::jsonb THEN EXCLUDED.sections ELSE orders.sections END,
         sections_json = CASE WHEN orders.sections_json = '[]'::jsonb THEN EXCLUDED.sections_json ELSE orders.sections_json END`,
      [order.id, order.deviceId, Buffer.from(encode(order.sections)), sectionsJson(order.sections), order.state, order.enqueuedAt, order.settledAt, order.reason, order.deliveries],
    );
  }

  async recordMessageReceipt(deviceId: string, uuid: string, at = Date.now()): Promise<number> {
    const { rows } = await this.q<{ at: number }>(
      `WITH ins AS (INSERT INTO message_receipts (device_id, uuid, received_at) VALUES ($1, $2, to_timestamp($3 / 1000.0))
                    ON CONFLICT DO NOTHING RETURNING received_at)
       SELECT ngtt_ms(received_at) AS at FROM ins
       UNION ALL SELECT ngtt_ms(received_at) FROM message_receipts WHERE device_id = $1 AND uuid = $2`,
      [deviceId, uuid, at],
    );
    return rows[0].at;
  }

  private async withReceipts(deviceId: string, orders: OrderRecord[]): Promise<OrderRecord[]> {
    const uuids = orders.flatMap(messageUuids);
    if (!uuids.length) return orders;
    const { rows } = await this.q<{ uuid: string; at: number }>(
      `SELECT uuid, ngtt_ms(received_at) AS at FROM message_receipts WHERE device_id = $1 AND uuid = ANY($2)`,
      [deviceId, uuids],
    );
    const received = new Map(rows.map((r) => [r.uuid, r.at]));
    return orders.map((order) => {
      const own = messageUuids(order);
      return own.length ? { ...order, messages: own.map((uuid) => ({ uuid, receivedAt: received.get(uuid) ?? null })) } : order;
    });
  }

  // ---- data and logs -----------------------------------------------------------------------

  /** All batches in one transaction; a batch whose (device, digest) is stored already is skipped. */
  async ingest(deviceId: string, uploads: Uploads): Promise<void> {
    const data = uploads.data ?? [];
    const logs = uploads.logs ?? [];
    if (!data.length && !logs.length) return;
    await this.transaction(async (c) => {
      for (const batch of data) {
        const payload = batch.encoded ?? encode(batch.series);
        const id = await newBatch(c, 'data_batches', deviceId, payload);
        if (id !== null) await insertValues(c, id, deviceId, batch.series);
      }
      for (const records of logs) {
        const id = await newBatch(c, 'log_batches', deviceId, encode(records));
        if (id !== null) await insertLogs(c, id, deviceId, records);
      }
    });
  }

  async readData(deviceId: string, options: ListOptions & { path?: string } = {}): Promise<StoredSeries[]> {
    const { rows } = await this.q<{ batch_id: string; series_no: number; path: string; ts: number; value: number | null; big: string | null; text: string | null; error: string | null; received_at: number }>(
      `WITH s AS (SELECT DISTINCT batch_id, series_no FROM data WHERE device_id = $1 AND ($2::text IS NULL OR path = $2)
                  ORDER BY batch_id DESC, series_no DESC LIMIT $3)
       SELECT d.batch_id, d.series_no, d.path, ngtt_ms(d.ts) AS ts, d.value, d.value_big::text AS big, d.value_text AS text, d.error,
              ngtt_ms(b.received_at) AS received_at
         FROM data d JOIN s USING (batch_id, series_no) JOIN data_batches b USING (batch_id)
        ORDER BY d.batch_id, d.series_no, d.value_no`,
      [deviceId, options.path ?? null, options.limit ?? DEFAULT_LIST_LIMIT],
    );
    const out: StoredSeries[] = [];
    let key = '';
    for (const r of rows) {
      const k = `${r.batch_id}/${r.series_no}`;
      if (k !== key) {
        out.push({ path: r.path, values: [], receivedAt: r.received_at });
        key = k;
      }
      const value: PathpointValue =
        r.error !== null ? [false, r.ts, r.error as 'malformed'] : [r.ts, r.big !== null ? BigInt(r.big) : r.text !== null ? r.text : (r.value as number)];
      out[out.length - 1].values.push(value);
    }
    return out;
  }

  async readLogs(deviceId: string, options: ListOptions = {}): Promise<StoredLogRecord[]> {
    const { rows } = await this.q<{ service: string; when: number; level: number; message: string; message_encoding: string | null; exception_text: string | null; received_at: number }>(
      `SELECT * FROM (
         SELECT l.batch_id, l.record_no, l.service, (extract(epoch FROM l.ts) * 1000000)::double precision AS when, l.level, l.message,
                l.message_encoding, l.exception_text, ngtt_ms(b.received_at) AS received_at
           FROM logs l JOIN log_batches b USING (batch_id)
          WHERE l.device_id = $1 ORDER BY l.batch_id DESC, l.record_no DESC LIMIT $2) newest
        ORDER BY batch_id, record_no`,
      [deviceId, options.limit ?? DEFAULT_LIST_LIMIT],
    );
    return rows.map((r) => ({
      service: r.service,
      when: r.when,
      message: r.message_encoding ? { encoding: r.message_encoding as 'base64-gzip', content: r.message } : r.message,
      level: r.level,
      ...(r.exception_text !== null ? { exception_text: r.exception_text } : {}),
      receivedAt: r.received_at,
    }));
  }

  // ---- devices -----------------------------------------------------------------------------

  async declarePathpoints(deviceId: string, declarations: PathpointDeclaration[], options: { authoritative?: boolean } = {}): Promise<PathpointDeclaration[]> {
    // One row per path: the device's first declaration of a path counts, the operator's last.
    const byPath = new Map<string, number>();
    for (const d of declarations) if (options.authoritative || !byPath.has(d.path)) byPath.set(d.path, d.storage_level);
    if (byPath.size) {
      await this.q(
        `INSERT INTO pathpoints (device_id, path, storage_level) SELECT $1, p, l FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS u(p, l, n) ORDER BY n
         ON CONFLICT (device_id, path) DO ${options.authoritative ? 'UPDATE SET storage_level = EXCLUDED.storage_level' : 'NOTHING'}`,
        [deviceId, [...byPath.keys()], [...byPath.values()]],
      );
    }
    return this.readPathpointDeclarations(deviceId);
  }

  async readPathpointDeclarations(deviceId: string): Promise<PathpointDeclaration[]> {
    const { rows } = await this.q<PathpointDeclaration>(`SELECT path, storage_level FROM pathpoints WHERE device_id = $1 ORDER BY seq`, [deviceId]);
    return rows;
  }

  async getDeviceConfig(deviceId: string): Promise<DeviceConfig> {
    const { rows } = await this.q<{ config: DeviceConfig }>(`SELECT config FROM devices WHERE device_id = $1`, [deviceId]);
    return rows[0]?.config ?? defaultDeviceConfig(deviceId);
  }

  /** Read, patch and write under the row's lock: concurrent patches through different gateways both apply. */
  async updateDeviceConfig(deviceId: string, patch: DeviceConfigPatch): Promise<DeviceConfig> {
    return this.transaction(async (c) => {
      await c.query(`INSERT INTO devices (device_id, config) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [deviceId, defaultDeviceConfig(deviceId)]);
      const { rows } = await c.query<{ config: DeviceConfig }>(`SELECT config FROM devices WHERE device_id = $1 FOR UPDATE`, [deviceId]);
      const config = applyConfigPatch(rows[0].config, patch);
      await c.query(`UPDATE devices SET config = $2, updated_at = now() WHERE device_id = $1`, [deviceId, config]);
      return config;
    });
  }

  // ---- BAOBs (spec §11): each change is one statement, so "higher version wins" holds fleet-wide.

  async listBaobs(deviceId: string): Promise<BaobInfo[]> {
    const { rows } = await this.q<BaobInfo>(`SELECT ${BAOB_INFO} FROM baobs WHERE device_id = $1 AND NOT deleted ORDER BY key`, [deviceId]);
    return rows;
  }

  async getBaob(deviceId: string, key: string): Promise<Baob | null> {
    const { rows } = await this.q<BaobInfo & { data: Buffer | null }>(`SELECT ${BAOB_INFO}, data FROM baobs WHERE device_id = $1 AND key = $2 AND NOT deleted`, [deviceId, key]);
    return rows.length ? { ...rows[0], data: rows[0].data ?? new Uint8Array(0) } : null;
  }

  async offerBaob(deviceId: string, key: string, data: Uint8Array, version: number): Promise<BaobOffer> {
    checkBaob(key, version);
    const stored = await this.q<BaobInfo>(
      `UPDATE baobs SET version = $3, size = $4, data = $5, updated_at = now()
        WHERE device_id = $1 AND key = $2 AND NOT deleted AND version < $3 RETURNING ${BAOB_INFO}`,
      [deviceId, key, version, data.length, Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
    );
    if (stored.rows.length) return { stored: true, info: stored.rows[0] };
    const { rows } = await this.q<BaobInfo & { deleted: boolean }>(`SELECT ${BAOB_INFO}, deleted FROM baobs WHERE device_id = $1 AND key = $2`, [deviceId, key]);
    if (!rows.length || rows[0].deleted) return { stored: false, reason: 'unknown' };
    return { stored: false, reason: 'not-newer', current: infoOf(rows[0]) };
  }

  async publishBaob(deviceId: string, key: string, data: Uint8Array): Promise<BaobInfo> {
    checkBaob(key, 1);
    const { rows } = await this.q<BaobInfo>(
      `INSERT INTO baobs (device_id, key, version, size, updated_at, deleted, data) VALUES ($1, $2, 1, $3, now(), false, $4)
       ON CONFLICT (device_id, key) DO UPDATE SET version = baobs.version + 1, size = EXCLUDED.size, updated_at = EXCLUDED.updated_at,
         deleted = false, data = EXCLUDED.data
       RETURNING ${BAOB_INFO}`,
      [deviceId, key, data.length, Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
    );
    return rows[0];
  }

  async deleteBaob(deviceId: string, key: string): Promise<boolean> {
    const r = await this.q(`UPDATE baobs SET deleted = true, data = NULL, size = 0, updated_at = now() WHERE device_id = $1 AND key = $2 AND NOT deleted`, [deviceId, key]);
    return r.rowCount === 1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    await this.sources.closeAll().catch(() => {});
    await this.checking;
    await this.pool.end();
  }

  // ---- plumbing ----------------------------------------------------------------------------

  private async q<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]) {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      if (isLinkError(err)) this.linkFailed(err);
      throw err;
    }
  }

  private async transaction<T>(body: (c: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      if (isLinkError(err)) this.linkFailed(err);
      throw err;
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      broken = isLinkError(err);
      if (broken) this.linkFailed(err);
      else await client.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  private linkFailed(err: unknown): void {
    if (this.closed) return;
    const reason = (err as Error)?.message ?? String(err);
    if (this.health.available()) this.opts.logger?.warn({ reason }, 'PostgreSQL unreachable: refusing devices until it is back');
    this.health.set('database', false, reason);
  }

  private checkLink(): Promise<void> {
    return (this.checking ??= (async () => {
      try {
        await this.pool.query('SELECT 1');
        if (this.requeueLater.size) {
          const ids = [...this.requeueLater];
          await this.pool.query(`UPDATE orders SET state = 'queued' WHERE order_id = ANY($1) AND state = 'in-flight'`, [ids]);
          for (const id of ids) this.requeueLater.delete(id);
        }
        if (!this.health.available()) this.opts.logger?.info({}, 'PostgreSQL reachable again');
        this.health.set('database', true);
      } catch (err) {
        this.linkFailed(err);
      } finally {
        this.checking = null;
      }
    })());
  }
}

/** Inserts the batch's unique key; its id, or null when this batch is stored already. */
async function newBatch(c: PoolClient, table: 'data_batches' | 'log_batches', deviceId: string, payload: Uint8Array): Promise<string | null> {
  const digest = createHash('sha256').update(payload).digest();
  const { rows } = await c.query<{ batch_id: string }>(
    `INSERT INTO ${table} (device_id, digest) VALUES ($1, $2) ON CONFLICT (device_id, digest) DO NOTHING RETURNING batch_id`,
    [deviceId, digest],
  );
  return rows.length ? rows[0].batch_id : null;
}

async function insertValues(c: PoolClient, batchId: string, deviceId: string, series: PathpointSeries[]): Promise<void> {
  const cols = { s: [] as number[], v: [] as number[], path: [] as string[], ts: [] as number[], num: [] as (number | null)[], big: [] as (string | null)[], text: [] as (string | null)[], err: [] as (string | null)[] };
  series.forEach((one, s) =>
    one.values.forEach((value, v) => {
      cols.s.push(s);
      cols.v.push(v);
      cols.path.push(one.path);
      const failed = value[0] === false;
      const x = failed ? null : value[1];
      cols.ts.push(failed ? (value[1] as number) : (value[0] as number));
      cols.num.push(typeof x === 'number' ? x : null);
      cols.big.push(typeof x === 'bigint' ? x.toString() : null);
      cols.text.push(typeof x === 'string' ? x : null);
      cols.err.push(failed ? String(value[2]) : null);
    }),
  );
  if (!cols.s.length) return;
  await c.query(
    `INSERT INTO data (batch_id, series_no, value_no, device_id, path, ts, value, value_big, value_text, error)
     SELECT $1, s, v, $2, p, to_timestamp(t / 1000.0), n, b::numeric, x, e
       FROM unnest($3::int[], $4::int[], $5::text[], $6::float8[], $7::float8[], $8::text[], $9::text[], $10::text[]) AS u(s, v, p, t, n, b, x, e)`,
    [batchId, deviceId, cols.s, cols.v, cols.path, cols.ts, cols.num, cols.big, cols.text, cols.err],
  );
}

async function insertLogs(c: PoolClient, batchId: string, deviceId: string, records: LogRecord[]): Promise<void> {
  if (!records.length) return;
  await c.query(
    `INSERT INTO logs (batch_id, record_no, device_id, ts, service, level, message, message_encoding, exception_text)
     SELECT $1, n - 1, $2, timestamptz 'epoch' + w * interval '1 microsecond', s, l, m, e, x
       FROM unnest($3::float8[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY AS u(w, s, l, m, e, x, n)`,
    [
      batchId,
      deviceId,
      records.map((r) => r.when),
      records.map((r) => r.service),
      records.map((r) => r.level),
      records.map((r) => (typeof r.message === 'string' ? r.message : r.message.content)),
      records.map((r) => (typeof r.message === 'string' ? null : r.message.encoding)),
      records.map((r) => r.exception_text ?? null),
    ],
  );
}

export function openPostgresStore(options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  return PostgresStore.open(options);
}
