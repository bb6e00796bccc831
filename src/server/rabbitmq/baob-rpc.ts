/**
 * Where a fleet's BAOBs live without PostgreSQL (spec §11, issue #13): in ONE place, the local store of the process
 * that runs the sink (`--sink`; SQLite in its `--data`), so every gateway sees the same keys,
 * versions and bytes. The other gateways reach it by request/reply over RabbitMQ:
 *
 *   gateway ──publish {method, args}──▶ <prefix>.baobs.requests ──▶ sink's BaobRpcServer
 *           ◀────────── reply (direct reply-to, amq.rabbitmq.reply-to) ───────┘
 *
 * `<prefix>.baobs.requests` is an exclusive queue of the sink's connection: while no sink runs it
 * does not exist, a request is returned at once (mandatory publish) and the caller gets
 * BaobStoreUnavailable (HTTP 503: the device retries later). Requests expire after the caller's
 * timeout, so a late sink never acts on a request nobody waits for.
 *
 * Each method is one synchronous step of the sink's LocalStore (version check and write
 * together), so concurrent requests from many gateways never interleave inside one: "higher
 * version wins" holds fleet-wide. The bytes travel in the messages (bounded by the server's BAOB
 * size limit, far below RabbitMQ's default 128 MiB message limit).
 *
 * Only for a fleet without PostgreSQL: with `--pg-url` (a shared HistoryStore) every gateway
 * reads and writes BAOBs in the database directly and this module is not used.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, Message } from 'amqplib';
import { decode, encode } from '../../minijson/index.js';
import { PayloadError } from '../../protocol/index.js';
import type { Store } from '../store/types.js';
import { ManagedChannel } from './channel.js';
import type { BrokerConnection } from './connection.js';
import { MINIJSON_CONTENT_TYPE } from './topology.js';

export const BAOB_METHODS = ['listBaobs', 'getBaob', 'offerBaob', 'publishBaob', 'deleteBaob'] as const;
export type BaobMethod = (typeof BAOB_METHODS)[number];
/** The BAOB part of the Store interface. */
export type BaobStore = Pick<Store, BaobMethod>;

const REPLY_TO = 'amq.rabbitmq.reply-to';
export const baobRequestQueue = (prefix: string) => `${prefix}.baobs.requests`;

/** No sink answered (none runs, or the broker is unreachable): retry later. */
export class BaobStoreUnavailable extends Error {
  override name = 'BaobStoreUnavailable';
  readonly statusCode = 503;
}

interface Reply {
  ok?: unknown;
  error?: { message: string; bad: boolean };
}

/** Runs in the sink: answers BAOB requests from `store` (its local store). */
export class BaobRpcServer {
  private constructor(private readonly managed: ManagedChannel) {}

  static async start(conn: BrokerConnection, opts: { prefix: string; store: BaobStore; timeoutMs?: number }): Promise<BaobRpcServer> {
    const queue = baobRequestQueue(opts.prefix);
    const managed: ManagedChannel = new ManagedChannel(conn, {
      confirm: false,
      name: 'baob-server',
      setup: async (ch: Channel) => {
        await ch.assertQueue(queue, { exclusive: true, autoDelete: true, durable: false });
        await ch.prefetch(16, false);
        await ch.consume(queue, (msg) => msg && void answer(ch, msg), { noAck: false });
      },
    });
    const answer = async (ch: Channel, msg: ConsumeMessage): Promise<void> => {
      let reply: Reply;
      try {
        const { method, args } = decode(msg.content) as { method: BaobMethod; args: unknown[] };
        if (!BAOB_METHODS.includes(method) || !Array.isArray(args)) throw new PayloadError(`not a BAOB method: ${String(method)}`);
        const result = await (opts.store[method] as (...a: unknown[]) => Promise<unknown>)(...args);
        reply = { ok: result ?? null };
      } catch (err) {
        if (!(err instanceof PayloadError)) conn.logger.error({ err }, 'BAOB request failed');
        reply = { error: { message: (err as Error).message, bad: err instanceof PayloadError } };
      }
      if (!managed.isOpen(ch)) return; // the request comes again on the next channel
      if (msg.properties.replyTo) {
        ch.sendToQueue(msg.properties.replyTo, Buffer.from(encode(reply)), { correlationId: msg.properties.correlationId, contentType: MINIJSON_CONTENT_TYPE });
      }
      ch.ack(msg);
    };
    try {
      await managed.ready(opts.timeoutMs ?? 10_000);
    } catch (err) {
      await managed.close();
      // The usual cause: the queue is exclusive to another process's connection.
      throw new Error(`cannot serve BAOB requests on ${queue}; does another --sink run for this prefix? (${(err as Error).message})`);
    }
    return new BaobRpcServer(managed);
  }

  close(): Promise<void> {
    return this.managed.close();
  }
}

/** In every gateway without the sink: the BAOB methods, answered by the sink. */
export class BaobRpcClient implements BaobStore {
  private readonly pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly managed: ManagedChannel;
  private readonly queue: string;
  private readonly timeoutMs: number;

  constructor(conn: BrokerConnection, opts: { prefix: string; timeoutMs?: number }) {
    this.queue = baobRequestQueue(opts.prefix);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.managed = new ManagedChannel(conn, {
      confirm: false,
      name: 'baob-client',
      setup: async (ch: Channel) => {
        ch.on('return', (msg: Message) => this.fail(msg.properties.correlationId, new BaobStoreUnavailable('no BAOB store reachable: no gateway of the fleet runs the sink')));
        await ch.consume(REPLY_TO, (msg) => msg && this.onReply(msg), { noAck: true });
      },
    });
    // Requests on a lost channel get no reply: fail them now rather than at their timeout.
    this.managed.on('lost', () => {
      for (const id of [...this.pending.keys()]) this.fail(id, new BaobStoreUnavailable('broker channel lost while waiting for the BAOB store'));
    });
  }

  listBaobs(...args: Parameters<Store['listBaobs']>) {
    return this.call('listBaobs', args) as ReturnType<Store['listBaobs']>;
  }

  getBaob(...args: Parameters<Store['getBaob']>) {
    return this.call('getBaob', args) as ReturnType<Store['getBaob']>;
  }

  offerBaob(...args: Parameters<Store['offerBaob']>) {
    return this.call('offerBaob', args) as ReturnType<Store['offerBaob']>;
  }

  publishBaob(...args: Parameters<Store['publishBaob']>) {
    return this.call('publishBaob', args) as ReturnType<Store['publishBaob']>;
  }

  deleteBaob(...args: Parameters<Store['deleteBaob']>) {
    return this.call('deleteBaob', args) as ReturnType<Store['deleteBaob']>;
  }

  async close(): Promise<void> {
    await this.managed.close();
    for (const id of [...this.pending.keys()]) this.fail(id, new BaobStoreUnavailable('closing'));
  }

  private async call(method: BaobMethod, args: unknown[]): Promise<unknown> {
    let ch: Channel;
    try {
      ch = await this.managed.ready(this.timeoutMs);
    } catch (err) {
      throw new BaobStoreUnavailable(`no broker channel for the BAOB store: ${(err as Error).message}`);
    }
    const correlationId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(correlationId, new BaobStoreUnavailable(`the BAOB store (the sink) did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.pending.set(correlationId, { resolve, reject, timer });
      ch.publish('', this.queue, Buffer.from(encode({ method, args })), {
        replyTo: REPLY_TO,
        correlationId,
        mandatory: true,
        expiration: String(this.timeoutMs),
        contentType: MINIJSON_CONTENT_TYPE,
      });
    });
  }

  private onReply(msg: ConsumeMessage): void {
    const waiter = this.pending.get(msg.properties.correlationId);
    if (!waiter) return; // timed out meanwhile
    this.pending.delete(msg.properties.correlationId);
    clearTimeout(waiter.timer);
    try {
      const reply = decode(msg.content) as Reply;
      if (reply.error) waiter.reject(reply.error.bad ? new PayloadError(reply.error.message) : new Error(`BAOB store: ${reply.error.message}`));
      else waiter.resolve(reply.ok);
    } catch (err) {
      waiter.reject(new Error(`undecodable reply from the BAOB store: ${(err as Error).message}`));
    }
  }

  private fail(correlationId: unknown, err: Error): void {
    const waiter = typeof correlationId === 'string' ? this.pending.get(correlationId) : undefined;
    if (!waiter) return;
    this.pending.delete(correlationId as string);
    clearTimeout(waiter.timer);
    waiter.reject(err);
  }
}
