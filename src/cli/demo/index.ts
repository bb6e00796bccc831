/**
 * `ngtt demo` (what `npm start` runs): a live fleet on loopback. It creates or reuses a dev PKI
 * under ./data/demo of the current directory, starts the reference server on its SQLite store,
 * starts simulated devices (NGTT on for all but the last, which shows the HTTPS path), feeds
 * them changing values, issues orders through the admin API and shows what every device is doing.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino, { type Logger } from 'pino';
import { NgttDevice, type NgttDeviceOptions } from '../../device/ngtt-device.js';
import { createDevDevice, createDevPki, loadDevDevice, loadDevPki, type DevPki } from '../../pki/index.js';
import type { NgttServer, ServerOptions } from '../../server/index.js';
import { adminRequest } from '../admin-client.js';
import { integerOption, parse, runCommand } from '../common.js';
import { Display, HTTPS_NOTE, type FleetView } from './display.js';
import { OrderIssuer } from './order-issuer.js';
import { startStatelyBridge } from './stately-bridge.js';
import { Plant } from './plant.js';

const HELP = `Usage: ngtt demo [options]     (npm start runs this)

Runs a live NGTT fleet on 127.0.0.1: the reference server and simulated devices, with orders
issued through the admin API. Ctrl-C stops it cleanly (devices drain, the server closes).

  --devices N        simulated devices (default 3; the last one has NGTT off and uses HTTPS)
  --duration S       stop after S seconds (default: run until Ctrl-C)
  --data DIR         where the PKI, the server's store and the device spools live (default ./data/demo)
  --port N           NGTT port (default 2405; 0 picks a free one)
  --https-port N     HTTPS device API port (default 8443; 0 picks a free one)
  --admin-port N     admin API port (default 8444; 0 picks a free one)
  --order-every MS   how often an order is issued (default 1500)
  --live-port N      port of the local live view on 127.0.0.1 (default 0: a free one; its URL is printed)
  --inspect          also stream every machine to Stately's inspector (@statelyai/inspect; its page needs internet)
  --inspect-port N   port of the inspector bridge on 127.0.0.1 (default 8080)`;

interface DemoDevice {
  device: NgttDevice;
  plant: Plant;
  ngttEnabled: boolean;
}

export async function runDemo(argv: string[]): Promise<number> {
  return runCommand('demo', async () => {
    const { values: o } = parse(argv, {
      help: { type: 'boolean', short: 'h' },
      devices: { type: 'string' },
      duration: { type: 'string' },
      data: { type: 'string' },
      port: { type: 'string' },
      'https-port': { type: 'string' },
      'admin-port': { type: 'string' },
      'order-every': { type: 'string' },
      'live-port': { type: 'string' },
      inspect: { type: 'boolean' },
      'inspect-port': { type: 'string' },
    });
    if (o.help) {
      console.log(HELP);
      return 0;
    }
    // The server's optional peers (fastify) load here, before anything is created: a missing one is a clear message.
    const { startServer } = await import('../../server/server.js');
    const deviceCount = integerOption(o.devices, 'devices', 3, 1, 50);
    const durationS = integerOption(o.duration, 'duration', 0, 0);
    const orderEveryMs = integerOption(o['order-every'], 'order-every', 1500, 50);
    const ports = {
      ngttPort: integerOption(o.port, 'port', 2405, 0, 65535),
      httpsPort: integerOption(o['https-port'], 'https-port', 8443, 0, 65535),
      adminPort: integerOption(o['admin-port'], 'admin-port', 8444, 0, 65535),
    };
    const livePort = integerOption(o['live-port'], 'live-port', 0, 0, 65535);
    const inspectPort = integerOption(o['inspect-port'], 'inspect-port', 8080, 1, 65535);
    // Listen for Ctrl-C before starting anything: an early one still shuts down cleanly.
    const stopped = untilStopped(durationS);
    // In the current directory (like `ngtt server`'s ./data), never inside the installed package.
    const dataDir = resolve(o.data ?? join('data', 'demo'));
    await mkdir(join(dataDir, 'devices'), { recursive: true });

    const pki = await devPki(join(dataDir, 'pki'));
    const deviceIds = Array.from({ length: deviceCount }, (_, i) => `dev-${i + 1}`);
    const serverLog = pino({ level: 'info' }, pino.destination({ dest: join(dataDir, 'server.log'), sync: false, mkdir: true }));
    const server = await startDemoServer(startServer, pki, join(dataDir, 'server'), ports, serverLog);
    const adminUrl = `http://127.0.0.1:${server.adminPort}`;
    console.log(`NGTT demo: server on 127.0.0.1 — NGTT ${server.ngttPort}, HTTPS ${server.httpsPort}, admin ${adminUrl}`);
    console.log(`data in ${dataDir} (server.log, devices.log); try: ngtt order list dev-1 --admin ${adminUrl}`);

    // The live view is local and needs no internet; a taken --live-port ends the demo with one line.
    const { startLiveView } = await import('../../live/server.js');
    const live = await startLiveView({ port: livePort, adminUrl }).catch(async (e) => {
      await server.close();
      throw e;
    });
    console.log(`live view: open ${live.url} in a browser to watch the fleet, its machines and its orders`);
    const inspector = o.inspect
      ? await startStatelyBridge(inspectPort).catch(async (e) => {
          await live.close();
          await server.close();
          throw e;
        })
      : undefined;
    if (inspector) console.log(`XState inspector (Stately's page, needs internet): open ${inspector.url}`);
    const deviceLog = pino.destination({ dest: join(dataDir, 'devices.log'), sync: false, mkdir: true });
    const fleet: DemoDevice[] = [];
    for (const [i, id] of deviceIds.entries()) {
      const ngttEnabled = deviceCount === 1 || i < deviceCount - 1;
      fleet.push(await startDevice(id, i, ngttEnabled, pki, server, dataDir, deviceLog, inspector?.inspect, live));
    }

    const issuer = new OrderIssuer(adminUrl, deviceIds, orderEveryMs);
    issuer.start();
    const display = new Display(process.stdout);
    const started = Date.now();
    const view = (): FleetView => ({
      elapsedMs: Date.now() - started,
      devices: fleet.map((d) => ({ ...d.device.status(), ngttEnabled: d.ngttEnabled })),
      ordersIssued: issuer.issued,
      issueError: issuer.lastError,
      orders: live.orders.list(50),
    });
    const sampler = setInterval(() => {
      const now = Date.now();
      // push() resolves once spooled; a full spool makes it wait (backpressure), never throw here.
      for (const d of fleet) for (const r of d.plant.sample(now)) d.device.push(r).catch(() => {});
    }, 1000);
    const painter = setInterval(() => display.update(view()), display.isTTY ? 500 : 250);

    const why = await stopped;
    clearInterval(sampler);
    clearInterval(painter);
    await issuer.stop();
    // Only a Ctrl-C can be followed by another; a --duration ending has nobody to press it.
    console.log(`\nstopping: devices drain their work, then the server closes…${why === 'signal' ? ' (Ctrl-C again to force)' : ''}`);
    await Promise.all(fleet.map((d) => d.device.close({ timeoutMs: 5000 }).catch((e) => console.error(`${d.device.status().deviceId}: ${(e as Error).message}`))));
    const final = view();
    console.log(renderSummary(final, await serverSummary(adminUrl)));
    inspector?.stop();
    await live.close();
    await server.close();
    serverLog.flush();
    deviceLog.flush();
    return 0;
  });
}

async function devPki(dir: string): Promise<DevPki> {
  return existsSync(join(dir, 'ca.crt')) ? loadDevPki(dir) : createDevPki(dir);
}

async function startDemoServer(startServer: (o: ServerOptions) => Promise<NgttServer>, pki: DevPki, dataDir: string, ports: { ngttPort: number; httpsPort: number; adminPort: number }, logger: Logger): Promise<NgttServer> {
  const options = { tls: { ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key }, host: '127.0.0.1', dataDir, logger };
  try {
    return await startServer({ ...options, ...ports });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    // Another server (or demo) has the standard ports: a newcomer still gets a working demo.
    console.log(`ports ${ports.ngttPort}/${ports.httpsPort}/${ports.adminPort} are taken; using free ones instead`);
    return startServer({ ...options, ngttPort: 0, httpsPort: 0, adminPort: 0 });
  }
}

async function startDevice(
  id: string,
  index: number,
  ngttEnabled: boolean,
  pki: DevPki,
  server: NgttServer,
  dataDir: string,
  log: pino.DestinationStream,
  inspect: NgttDeviceOptions['inspect'],
  live: NgttDeviceOptions['live'],
): Promise<DemoDevice> {
  const pkiDir = join(dataDir, 'pki');
  const material = existsSync(join(pkiDir, 'devices', `${id}.crt`)) ? await loadDevDevice(pkiDir, id) : await createDevDevice(pkiDir, id);
  const plant = new Plant(index);
  // The device's own logs go to the file and, as LOGS records, to the server (log shipping).
  let shipped: { write(line: string): void } | undefined;
  const logger = pino(
    { level: 'info', base: { device: id } },
    pino.multistream([{ stream: log }, { stream: { write: (line: string) => shipped?.write(line) } }]),
  );
  const device = new NgttDevice({
    ca: pki.ca.cert,
    cert: material.cert,
    key: material.key,
    host: '127.0.0.1',
    ngttPort: server.ngttPort,
    httpsPort: server.httpsPort,
    ngtt: ngttEnabled,
    spoolPath: join(dataDir, 'devices', `${id}.sqlite`),
    logger,
    inspect,
    live,
    // Livelier than production defaults, so the HTTPS device visibly keeps up.
    pollIntervalMs: 1000,
    graceMs: 10_000,
    upload: { maxBatchAgeMs: 500 },
    handlers: {
      onRead: async (path) => plant.read(path),
      onWrite: async (path, value) => plant.write(path, value),
      onSysctl: async (opType) => {
        logger.info({ opType }, 'sysctl');
        plant.sysctl(opType);
      },
    },
  });
  shipped = device.logStream();
  device.start();
  return { device, plant, ngttEnabled };
}

/**
 * Resolves on Ctrl-C / SIGTERM, or after `seconds` (0: never). A second Ctrl-C exits at once.
 * One press arrives more than once: the terminal signals the whole process group and npm and
 * tsx relay it too, so signals within a second of the first count as the same press.
 */
function untilStopped(seconds: number): Promise<'signal' | 'duration'> {
  return new Promise((resolveStop) => {
    let stoppedAt = 0;
    const stop = (why: 'signal' | 'duration') => {
      if (stoppedAt) {
        if (Date.now() - stoppedAt < 1000) return;
        console.error('\nforced exit');
        process.exit(130);
      }
      stoppedAt = Date.now();
      resolveStop(why);
    };
    process.on('SIGINT', () => stop('signal'));
    process.on('SIGTERM', () => stop('signal'));
    if (seconds > 0) setTimeout(() => stop('duration'), seconds * 1000).unref();
  });
}

interface ServerDeviceSummary {
  deviceId: string;
  counters: { ordersConfirmed: number; ordersRejected: number; ordersDelivered: number; dataBatchesConfirmed: number; logRecords: number };
}

async function serverSummary(adminUrl: string): Promise<ServerDeviceSummary[]> {
  try {
    return ((await adminRequest(adminUrl, 'GET', '/v1/admin/devices')) as { devices: ServerDeviceSummary[] }).devices;
  } catch {
    return [];
  }
}

function renderSummary(view: FleetView, server: ServerDeviceSummary[]): string {
  const sum = (f: (d: FleetView['devices'][number]) => number) => view.devices.reduce((n, d) => n + f(d), 0);
  const lines = [
    `demo finished after ${(view.elapsedMs / 1000).toFixed(1)} s: ${view.ordersIssued} orders issued; ` +
      `devices acked ${sum((d) => d.orders.acked)}, rejected ${sum((d) => d.orders.rejected)}; ` +
      `values pushed ${sum((d) => d.values.pushed)}, confirmed ${sum((d) => d.values.confirmed)}, still spooled ${sum((d) => d.values.pending)} (sent on next start)`,
  ];
  for (const s of server) {
    lines.push(`  server: ${s.deviceId} orders confirmed ${s.counters.ordersConfirmed}, rejected ${s.counters.ordersRejected}, delivered by HTTPS poll ${s.counters.ordersDelivered}; data batches stored ${s.counters.dataBatchesConfirmed}; log records ${s.counters.logRecords}`);
  }
  if (view.devices.some((d) => !d.ngttEnabled)) lines.push(`  ${HTTPS_NOTE}`);
  return lines.join('\n');
}
