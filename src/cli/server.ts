/** `ngtt server`: the reference server with a dev PKI folder (or explicit PEM files) and SQLite or RabbitMQ. */
import { join } from 'node:path';
import { pino } from 'pino';
import { loadDevPki } from '../pki/index.js';
import type { ServerOptions } from '../server/index.js';
import { DEFAULT_ADMISSION } from '../server/admission.js';
import { trustedProxyList } from '../server/proxy-certificate.js';
import type { HistoryStore } from '../server/rabbitmq/store.js';
import { createMemoryStore, DEFAULT_DEDUPE_WINDOW, openSqliteStore, type Store } from '../server/store/index.js';
import { EXIT_USAGE, integerOption, parse, runCommand, UserError, readPem } from './common.js';

const HELP = `Usage: ngtt server [options]

Runs the reference NGTT server: NGTT (mutual TLS), the HTTPS device API and the admin API.

  --pki DIR           dev PKI folder from \`ngtt certs init\` (default ./pki)
  --ca, --cert, --key FILE   PEM files instead of --pki (all three)
  --data DIR          folder of the SQLite store (default ./data)
  --memory            keep everything in memory instead (lost on exit)
  --store KIND        sqlite (default; --data or --memory), postgres (everything in PostgreSQL
                      at --pg-url, docs/postgres.md) or rabbitmq: a gateway of a fleet, orders
                      and uploads on the broker (docs/rabbitmq.md); its order history, device
                      config, declarations, BAOBs and sink data go to --pg-url when given
                      (shared by the whole fleet), else to this process's --data / --memory
  --pg-url URL        PostgreSQL for --store postgres / rabbitmq (or NGTT_PG_URL; PG* variables
                      such as PGPASSWORD apply)
  --amqp-url URL      RabbitMQ for --store rabbitmq (default amqp://guest:guest@127.0.0.1:5672)
  --amqp-prefix P     name prefix of the queues and exchanges (default ngtt); same on every gateway
  --amqp-connections N  AMQP connections for device order sources, one per 2 000 devices (default 1)
  --order-queues T    quorum (default) or classic per-device order queues
  --sink              also consume the broker's data, logs and order history into the store:
                      with --pg-url run it on as many processes as you like (exactly once by
                      PostgreSQL's batch keys), without it on exactly one process of the fleet
  --host ADDR         address of the device ports (default 127.0.0.1)
  --port N            NGTT port (default 2405)
  --https-port N      HTTPS device API port (default 8443)
  --admin-port N      admin API port (default 8444)
  --admin-host ADDR   admin API address (default 127.0.0.1; elsewhere needs NGTT_ADMIN_TOKEN)
  --window N          unacknowledged orders per device (default 4)
  --idle-timeout S    seconds of device silence before disconnecting (default 150)
Admission control of each device port, NGTT and HTTPS (docs/operations.md; refusals are
counted and logged rate-limited; a refused device retries with backoff):
  --max-connections N   TCP connections at once, handshaking ones included (default 100000);
                      keep it below the file-descriptor limit (ulimit -n)
  --max-handshakes N  connections still in the TLS handshake (default 2000)
  --max-handshakes-per-source N  of those, from one IPv4 address or IPv6 /64 (default 100)
  --handshake-timeout S  seconds to finish the TLS handshake, both device ports (default 10)
  --max-frame BYTES   largest frame / HTTP body accepted (default 16 MiB)
  --counter-retention S  seconds a disconnected device's counters are kept after it was last
                      seen (default 86400)
  --dedupe-window N   data batches per device remembered (SHA-256) to store a re-sent one once
                      (default 256; docs/reliability.md)
  --max-baob BYTES    largest BAOB a device may upload or you may publish (default 16 MiB)
  --trusted-proxy ADDR  a TLS-terminating proxy (IP or CIDR; repeat for more): from it, the HTTPS
                      device API takes the device certificate from X-SSL-Client-Certificate (PEM,
                      newlines as tabs), verified against the CA. From anyone else the header
                      is ignored. Default: no proxy trusted.

Environment: NGTT_AMQP_URL / NGTT_PG_URL (instead of --amqp-url / --pg-url, keep passwords off the command line),
NGTT_ADMIN_TOKEN (bearer token for the admin API), NGTT_LOG_LEVEL (default info).
Stops cleanly on SIGINT / SIGTERM (unsettled orders go back to the queue).`;


export async function runServer(argv: string[]): Promise<number> {
  return runCommand('server', async () => {
    const { values: v, positionals } = parse(argv, {
      help: { type: 'boolean', short: 'h' },
      pki: { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      data: { type: 'string' },
      memory: { type: 'boolean' },
      store: { type: 'string' },
      'amqp-url': { type: 'string' },
      'pg-url': { type: 'string' },
      'amqp-prefix': { type: 'string' },
      'order-queues': { type: 'string' },
      'amqp-connections': { type: 'string' },
      sink: { type: 'boolean' },
      host: { type: 'string' },
      port: { type: 'string' },
      'https-port': { type: 'string' },
      'admin-port': { type: 'string' },
      'admin-host': { type: 'string' },
      window: { type: 'string' },
      'idle-timeout': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-handshakes': { type: 'string' },
      'max-handshakes-per-source': { type: 'string' },
      'handshake-timeout': { type: 'string' },
      'max-frame': { type: 'string' },
      'max-baob': { type: 'string' },
      'dedupe-window': { type: 'string' },
      'counter-retention': { type: 'string' },
      'trusted-proxy': { type: 'string', multiple: true },
    });
    if (v.help) {
      console.log(HELP);
      return 0;
    }
    // fastify is an optional peer: loaded after --help (which works without it), before anything else.
    const { startServer } = await import('../server/server.js');
    if (positionals.length) throw new UserError(`unexpected argument ${JSON.stringify(positionals[0])}`, EXIT_USAGE);
    if (v.memory && v.data) throw new UserError('--memory and --data exclude each other', EXIT_USAGE);
    const storeKind = v.store ?? 'sqlite';
    if (storeKind !== 'sqlite' && storeKind !== 'rabbitmq' && storeKind !== 'postgres') {
      throw new UserError(`--store must be sqlite, postgres or rabbitmq, not ${JSON.stringify(storeKind)}`, EXIT_USAGE);
    }
    const rabbit = storeKind === 'rabbitmq';
    const pgUrl = v['pg-url'] ?? (storeKind === 'sqlite' ? undefined : process.env.NGTT_PG_URL);
    if (storeKind === 'sqlite' && pgUrl) throw new UserError('--pg-url needs --store postgres or --store rabbitmq', EXIT_USAGE);
    if (storeKind === 'postgres' && !pgUrl) throw new UserError('--store postgres needs --pg-url (or NGTT_PG_URL)', EXIT_USAGE);
    if (pgUrl && (v.data || v.memory)) throw new UserError('--data / --memory and --pg-url exclude each other: everything is kept in PostgreSQL', EXIT_USAGE);
    if (pgUrl) {
      try {
        if (!/^postgres(ql)?:$/.test(new URL(pgUrl).protocol)) throw new Error('not postgres');
      } catch {
        throw new UserError('--pg-url must be a postgres:// or postgresql:// URL', EXIT_USAGE);
      }
    }
    if (!rabbit && (v['amqp-url'] || v['amqp-prefix'] || v['order-queues'] || v['amqp-connections'] || v.sink)) {
      throw new UserError('--amqp-url, --amqp-prefix, --amqp-connections, --order-queues and --sink need --store rabbitmq', EXIT_USAGE);
    }
    const orderConnections = integerOption(v['amqp-connections'], 'amqp-connections', 1, 1, 64);
    const orderQueueType = v['order-queues'] ?? 'quorum';
    if (orderQueueType !== 'quorum' && orderQueueType !== 'classic') throw new UserError(`--order-queues must be quorum or classic, not ${JSON.stringify(orderQueueType)}`, EXIT_USAGE);
    const amqpUrl = v['amqp-url'] ?? process.env.NGTT_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
    if (rabbit) {
      try {
        if (!/^amqps?:$/.test(new URL(amqpUrl).protocol)) throw new Error('not amqp');
      } catch {
        throw new UserError('--amqp-url must be an amqp:// or amqps:// URL', EXIT_USAGE);
      }
    }

    // Every option is checked before anything is read or opened.
    const port = (name: string, value: string | undefined, fallback: number) => integerOption(value, name, fallback, 0, 65535);
    const numbers = {
      ngttPort: port('port', v.port, 2405),
      httpsPort: port('https-port', v['https-port'], 8443),
      adminPort: port('admin-port', v['admin-port'], 8444),
      window: integerOption(v.window, 'window', 4, 1, 0x7fff),
      idleTimeoutMs: integerOption(v['idle-timeout'], 'idle-timeout', 150, 1, 86_400) * 1000,
      maxFrameLength: integerOption(v['max-frame'], 'max-frame', 16 * 1024 * 1024, 1024, 0xffffffff),
      maxBaobBytes: integerOption(v['max-baob'], 'max-baob', 16 * 1024 * 1024, 1, 64 * 1024 * 1024),
      counterRetentionMs: integerOption(v['counter-retention'], 'counter-retention', 86_400, 1, 365 * 86_400) * 1000,
      dedupeWindow: integerOption(v['dedupe-window'], 'dedupe-window', DEFAULT_DEDUPE_WINDOW, 1, 1_000_000),
      admission: {
        maxConnections: integerOption(v['max-connections'], 'max-connections', DEFAULT_ADMISSION.maxConnections, 1, 10_000_000),
        maxPendingHandshakes: integerOption(v['max-handshakes'], 'max-handshakes', DEFAULT_ADMISSION.maxPendingHandshakes, 1, 1_000_000),
        maxPendingHandshakesPerSource: integerOption(v['max-handshakes-per-source'], 'max-handshakes-per-source', DEFAULT_ADMISSION.maxPendingHandshakesPerSource, 1, 1_000_000),
        handshakeTimeoutMs: integerOption(v['handshake-timeout'], 'handshake-timeout', DEFAULT_ADMISSION.handshakeTimeoutMs / 1000, 1, 600) * 1000,
      },
    };
    const trustedProxies = v['trusted-proxy'] ?? [];
    try {
      trustedProxyList(trustedProxies);
    } catch (e) {
      throw new UserError(`--trusted-proxy: ${(e as Error).message}`, EXIT_USAGE);
    }
    let tls: ServerOptions['tls'];
    const explicit = [v.ca, v.cert, v.key].filter(Boolean).length;
    if (explicit === 3) {
      tls = { ca: await readPem(v.ca!, 'CA certificate'), cert: await readPem(v.cert!, 'server certificate'), key: await readPem(v.key!, 'server key') };
    } else if (explicit) {
      throw new UserError('--ca, --cert and --key go together', EXIT_USAGE);
    } else {
      const pki = await loadDevPki(v.pki ?? 'pki');
      tls = { ca: pki.ca.cert, ...pki.server };
    }
    const dataDir = v.memory || pgUrl ? undefined : (v.data ?? 'data');
    const { dedupeWindow } = numbers;
    const logger = pino({ level: process.env.NGTT_LOG_LEVEL ?? 'info' });
    let store: Store | undefined;
    let shared: HistoryStore | undefined;
    if (pgUrl) {
      // Imported only here: pg is an optional peer, needed with --pg-url alone.
      const { openPostgresStore } = await import('../server/postgres/store.js');
      try {
        shared = await openPostgresStore({ url: pgUrl, ownsOrderQueue: !rabbit, logger: logger.child({ component: 'postgres' }) });
      } catch (e) {
        throw new UserError(`cannot use PostgreSQL at ${redact(pgUrl)}: ${(e as Error).message}`);
      }
      if (!rabbit) store = shared;
    }
    if (rabbit) {
      // Imported only here: amqplib is an optional peer, needed for --store rabbitmq alone.
      const { openRabbitStore } = await import('../server/rabbitmq/store.js');
      const local = shared ?? (dataDir ? openSqliteStore(join(dataDir, 'ngtt.db'), { dedupeWindow }) : createMemoryStore({ dedupeWindow }));
      try {
        store = await openRabbitStore({
          url: amqpUrl,
          prefix: v['amqp-prefix'] ?? 'ngtt',
          orderQueueType,
          orderConnections,
          sink: v.sink ?? false,
          local,
          connectionName: `ngtt-gateway-${process.pid}`,
          logger: logger.child({ component: 'rabbitmq' }),
        });
      } catch (e) {
        await local.close();
        throw new UserError(`cannot use RabbitMQ at ${redact(amqpUrl)}: ${(e as Error).message}`);
      }
    }
    let server;
    try {
      server = await startServer({
      tls,
      store,
      logger,
      dataDir,
      host: v.host,
      adminHost: v['admin-host'],
      adminToken: process.env.NGTT_ADMIN_TOKEN || undefined,
      trustedProxies,
      ...numbers,
      });
    } catch (e) {
      await store?.close();
      throw e;
    }
    const where = pgUrl ? `, data in PostgreSQL ${redact(pgUrl)}` : v.memory ? ' (in-memory store)' : `, data in ${join(v.data ?? 'data', 'ngtt.db')}`;
    console.error(
      `ngtt server: NGTT on ${v.host ?? '127.0.0.1'}:${server.ngttPort}, HTTPS on :${server.httpsPort}, admin on ${v['admin-host'] ?? '127.0.0.1'}:${server.adminPort}` +
        (rabbit ? `, orders on RabbitMQ ${redact(amqpUrl)} prefix ${v['amqp-prefix'] ?? 'ngtt'}${v.sink ? ' with sink' : ''}${where.replace(', data in', '; local')}` : where),
    );
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
    await store?.close();
    return 0;
  });
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}
