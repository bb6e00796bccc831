import { NgttDevice, PathpointError, type PathpointScalar } from 'ngtt';

// Stands in for your PLC: pathpoint name → register value (e.g. MODBUS).
const registers = new Map<string, PathpointScalar>([['f2', 21.5]]);

const device = new NgttDevice({
  host: process.env.NGTT_HOST ?? 'localhost',      // the server certificate must name this host
  ngttPort: Number(process.env.NGTT_PORT ?? 2405),
  httpsPort: Number(process.env.NGTT_HTTPS_PORT ?? 8443),
  ca: 'pki/ca.crt', cert: 'pki/devices/boiler-1.crt', key: 'pki/devices/boiler-1.key', // paths, PEM text or bytes
  ngtt: true,                                      // off by default: HTTPS polling only
  spoolPath: 'boiler-1.db',                        // durable spool and executed-order ids (SQLite)
  handlers: {
    onRead: async (path, { signal }) => {          // signal: aborted on a timeout or close()
      signal.throwIfAborted();                     // a slow bus read would take { signal } too
      const value = registers.get(path);
      if (value === undefined) throw new PathpointError('invalid'); // uploaded as [false, ts, 'invalid']
      return value;
    },
    onWrite: async (path, value) => void registers.set(path, value),
    onSysctl: async (op) => { if (op === 'reboot') log.warn('reboot requested'); },
  },
});
const log = device.logger();                       // pino: to stdout, and shipped to the server
device.on('order', (e) => log.info({ order: e.id, phase: e.phase }, 'order'));
device.on('state', (state) => log.info(`NGTT ${state}`)); // connecting, authenticated, backoff…
device.on('fault', (f) => log.warn({ source: f.source }, f.message)); // contained, never thrown; see status().faults
device.on('baob', (e) => log.info(e, 'BAOB changed')); // {key, version, change: downloaded | deleted | uploaded}
device.start();

await device.push({ path: 'f2', value: 21.5 });    // resolves once durably spooled
const config = await device.getConfiguration({ timeoutMs: 10_000 }); // always HTTPS; a 4xx rejects at once
log.info({ name: config.verbose_name }, 'configuration');

process.once('SIGTERM', async () => {
  log.info('stopping');
  await device.close({ timeoutMs: 5000 });         // running orders finish, spooled values are confirmed
});
