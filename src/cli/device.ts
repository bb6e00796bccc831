/**
 * `ngtt device`: connect one device over NGTT from its certificate, print orders as they come
 * and acknowledge them, and push values. A hands-on client for trying a server.
 */
import { NgttConnection, type NgttOrder } from '../device/index.js';
import { loadDevDevice, loadDevPki, readDeviceIdentity } from '../pki/index.js';
import type { PathpointSeries } from '../protocol/index.js';
import { EXIT_USAGE, integerOption, keyMaterialError, parse, readPem, runCommand, UserError } from './common.js';

const HELP = `Usage: ngtt device (--pki DIR --id DEVICE-ID | --ca FILE --cert FILE --key FILE) [options]

Connects a device over NGTT (mutual TLS), prints every order as it arrives and acknowledges it
(ORDER_CONFIRM) — or refuses it with --reject. Ctrl-C disconnects.

  --pki DIR          dev PKI folder (default ./pki) holding devices/<id>.crt and .key
  --id DEVICE-ID     which device of the PKI folder to be
  --ca, --cert, --key FILE   PEM files instead of --pki/--id (all three)
  --host ADDR        server address (default 127.0.0.1)
  --port N           NGTT port (default 2405)
  --servername NAME  name to verify the server certificate against (default: --host)
  --reject           answer every order with ORDER_REJECT instead of confirming it
  --push PATH=VALUE  send a pathpoint value now (repeatable); prints when the server stored it
  --once             exit once the pushes are confirmed, without listening for orders

Example: ngtt device --pki data/demo/pki --id dev-1 --push W1=1500 --once`;

/** `W1=1500` → number when it reads as one, else the string. */
function parsePush(spec: string, now: number): PathpointSeries {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new UserError(`--push takes PATH=VALUE, not ${JSON.stringify(spec)}`, EXIT_USAGE);
  const raw = spec.slice(eq + 1);
  const value = raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  return { path: spec.slice(0, eq), values: [[now, value]] };
}

function describe(order: NgttOrder): string {
  const orders = order.sections.flatMap((s) => s.orders.map((o) => JSON.stringify(o)));
  return `order ${order.id ?? '(no id)'} (tid ${order.tid}): ${orders.join(', ')}${order.skipped.length ? ` [${order.skipped.length} skipped]` : ''}`;
}

export async function runDevice(argv: string[]): Promise<number> {
  return runCommand('device', async () => {
    const { values: v } = parse(argv, {
      help: { type: 'boolean', short: 'h' },
      pki: { type: 'string' },
      id: { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      servername: { type: 'string' },
      reject: { type: 'boolean' },
      push: { type: 'string', multiple: true },
      once: { type: 'boolean' },
    });
    if (v.help) {
      console.log(HELP);
      return 0;
    }
    let tls: { ca: string; cert: string; key: string };
    if (v.ca || v.cert || v.key) {
      if (!(v.ca && v.cert && v.key)) throw new UserError('--ca, --cert and --key go together', EXIT_USAGE);
      tls = { ca: await readPem(v.ca, 'CA certificate'), cert: await readPem(v.cert, 'device certificate'), key: await readPem(v.key, 'device key') };
    } else {
      if (!v.id) throw new UserError('say which device: --id DEVICE-ID (with --pki DIR), or --ca/--cert/--key', EXIT_USAGE);
      const dir = v.pki ?? 'pki';
      const pki = await loadDevPki(dir);
      const device = await loadDevDevice(dir, v.id).catch(() => {
        throw new UserError(`no certificate for ${v.id} in ${dir}; create one with: ngtt certs device ${v.id} --dir ${dir}`);
      });
      tls = { ca: pki.ca.cert, ...device };
    }
    const deviceId = readDeviceIdentity(tls.cert).deviceId;
    const host = v.host ?? '127.0.0.1';
    const port = integerOption(v.port, 'port', 2405, 1, 65535);
    const pushes = (v.push ?? []).map((p) => parsePush(p, Date.now()));

    let connection: NgttConnection;
    try {
      connection = await NgttConnection.connect({ host, port, servername: v.servername, ...tls, wantOrders: !v.once });
    } catch (e) {
      throw keyMaterialError(e) ?? new UserError(`cannot connect to ${host}:${port} as ${deviceId}: ${(e as Error).message}`);
    }
    console.log(`connected to ${host}:${port} as ${deviceId}`);
    connection.on('disconnected', (err) => console.log(`disconnected${err ? `: ${err.message}` : ''}; reconnecting…`));
    connection.on('connected', () => console.log('reconnected'));
    connection.onOrder((order) => {
      console.log(describe(order));
      if (v.reject) {
        order.nack('refused by ngtt device --reject');
        console.log(`  rejected ${order.id ?? ''}`);
      } else {
        order.ack();
        console.log(`  acknowledged ${order.id ?? ''}`);
      }
    });
    for (const series of pushes) {
      await connection.syncPathpoints([series]);
      console.log(`pushed ${series.path}=${JSON.stringify(series.values[0][1])}: stored by the server`);
    }
    if (!v.once) {
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
    connection.removeAllListeners('disconnected');
    await connection.close();
    return 0;
  });
}

