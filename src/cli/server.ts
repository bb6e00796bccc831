/** `ngtt server`: the reference server with a dev PKI folder (or explicit PEM files) and SQLite. */
import { join } from 'node:path';
import { loadDevPki } from '../pki/index.js';
import { startServer, type ServerOptions } from '../server/index.js';
import { EXIT_USAGE, integerOption, parse, runCommand, UserError, readPem } from './common.js';

const HELP = `Usage: ngtt server [options]

Runs the reference NGTT server: NGTT (mutual TLS), the HTTPS device API and the admin API.

  --pki DIR           dev PKI folder from \`ngtt certs init\` (default ./pki)
  --ca, --cert, --key FILE   PEM files instead of --pki (all three)
  --data DIR          folder of the SQLite store (default ./data)
  --memory            keep everything in memory instead (lost on exit)
  --host ADDR         address of the device ports (default 127.0.0.1)
  --port N            NGTT port (default 2405)
  --https-port N      HTTPS device API port (default 8443)
  --admin-port N      admin API port (default 8444)
  --admin-host ADDR   admin API address (default 127.0.0.1; elsewhere needs NGTT_ADMIN_TOKEN)
  --window N          unacknowledged orders per device (default 4)
  --idle-timeout S    seconds of device silence before disconnecting (default 150)
  --max-frame BYTES   largest frame / HTTP body accepted (default 16 MiB)

Environment: NGTT_ADMIN_TOKEN (bearer token for the admin API), NGTT_LOG_LEVEL (default info).
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
      host: { type: 'string' },
      port: { type: 'string' },
      'https-port': { type: 'string' },
      'admin-port': { type: 'string' },
      'admin-host': { type: 'string' },
      window: { type: 'string' },
      'idle-timeout': { type: 'string' },
      'max-frame': { type: 'string' },
    });
    if (v.help) {
      console.log(HELP);
      return 0;
    }
    if (positionals.length) throw new UserError(`unexpected argument ${JSON.stringify(positionals[0])}`, EXIT_USAGE);
    if (v.memory && v.data) throw new UserError('--memory and --data exclude each other', EXIT_USAGE);

    // Every option is checked before anything is read or opened.
    const port = (name: string, value: string | undefined, fallback: number) => integerOption(value, name, fallback, 0, 65535);
    const numbers = {
      ngttPort: port('port', v.port, 2405),
      httpsPort: port('https-port', v['https-port'], 8443),
      adminPort: port('admin-port', v['admin-port'], 8444),
      window: integerOption(v.window, 'window', 4, 1, 0x7fff),
      idleTimeoutMs: integerOption(v['idle-timeout'], 'idle-timeout', 150, 1, 86_400) * 1000,
      maxFrameLength: integerOption(v['max-frame'], 'max-frame', 16 * 1024 * 1024, 1024, 0xffffffff),
    };
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
    const server = await startServer({
      tls,
      dataDir: v.memory ? undefined : (v.data ?? 'data'),
      host: v.host,
      adminHost: v['admin-host'],
      adminToken: process.env.NGTT_ADMIN_TOKEN || undefined,
      ...numbers,
    });
    console.error(
      `ngtt server: NGTT on ${v.host ?? '127.0.0.1'}:${server.ngttPort}, HTTPS on :${server.httpsPort}, admin on ${v['admin-host'] ?? '127.0.0.1'}:${server.adminPort}` +
        (v.memory ? ' (in-memory store)' : `, data in ${join(v.data ?? 'data', 'ngtt.db')}`),
    );
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
    return 0;
  });
}
