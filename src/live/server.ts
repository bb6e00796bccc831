/**
 * The live view: one page on 127.0.0.1 that shows a fleet of devices while you develop — each
 * device's status, its machines drawn as state charts from their definitions with the active
 * states lit, their recent events, and an order timeline — and sends orders through the admin
 * API. Everything the page needs is served from here (the page from this package, Mermaid from
 * the optional peer `mermaid`); nothing is fetched from the internet.
 *
 * A page gets the whole current picture first (`snapshot`), then batched changes (`update`),
 * over Server-Sent Events, so a page opened late shows the same as one open from the start.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { InspectionEvent } from 'xstate';
import type { NgttDevice } from '../device/ngtt-device.js';
import { parseSectionsStrict, PayloadError } from '../protocol/index.js';
import { ActorBoard, type ActorView } from './actors.js';
import { listenOnLoopback, LOOPBACK } from './listen.js';
import { OrderTimeline, type TimelineEntry } from './orders.js';
import { readLimited } from '../protocol/read-limited.js';

export interface LiveViewOptions {
  /** Port on 127.0.0.1. Default 0: a free one (see `url`). */
  port?: number;
  /** The server's admin API: the order timeline reads it and the page sends orders through it. */
  adminUrl?: string;
  /** Devices to show. Their machines show only when they were made with `live` (or `inspect: live.attach(device)`). */
  devices?: NgttDevice[];
  /** How often changes are pushed to pages. Default 250 ms. */
  pushEveryMs?: number;
}

export interface LiveView {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  readonly port: number;
  readonly actors: ActorBoard;
  readonly orders: OrderTimeline;
  /**
   * Shows a device; returns the inspector for its machines. NgttDevice calls this itself when
   * given `live` as an option.
   */
  attach(device: NgttDevice): (event: InspectionEvent) => void;
  close(): Promise<void>;
}

const HOST = LOOPBACK;

/** The page's files: next to this module from the sources, in src/live/assets from dist/. */
function assetsDir(): string {
  for (const relative of ['./assets/', '../../../src/live/assets/']) {
    const dir = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(`${dir}live.html`)) return dir;
  }
  throw new Error('the live view page (src/live/assets) is missing from the ngtt package');
}

/** Mermaid's single-file browser build, when the optional peer is installed. */
function mermaidFile(): string | undefined {
  try {
    return createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js');
  } catch {
    return undefined;
  }
}

/** What a page may have unread before it is dropped (it reconnects for a fresh snapshot). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
// The page may talk to this server only: a stray reference to anything else fails in the browser.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'";

export async function startLiveView(options: LiveViewOptions = {}): Promise<LiveView> {
  const assets = assetsDir();
  const mermaid = mermaidFile();
  const actors = new ActorBoard();
  const orders = new OrderTimeline({ adminUrl: options.adminUrl });
  const devices = new Map<string, NgttDevice>();
  const clients = new Set<ServerResponse>();

  const fleet = () =>
    [...devices.values()].map((d) => {
      const s = d.status();
      return { deviceId: s.deviceId, connection: s.connection, transport: s.transport, orders: s.orders, values: s.values, logs: s.logs, bytesSent: s.bytesSent, bytesReceived: s.bytesReceived, faults: s.faults };
    });
  const snapshot = () => ({ at: Date.now(), adminUrl: options.adminUrl ?? null, mermaid: mermaid !== undefined, charts: actors.chartList(), fleet: fleet(), actors: actors.list(), orders: orders.list(50) });

  // Changes are collected and pushed in batches: the runtime makes hundreds of events a second.
  const changedActors = new Map<string, ActorView>();
  const removedActors = new Set<string>();
  const changedOrders = new Map<string, TimelineEntry>();
  let chartsSent = 0;
  actors.onChange((view, removed) => {
    if (removed) {
      changedActors.delete(view.sessionId);
      removedActors.add(view.sessionId);
    } else changedActors.set(view.sessionId, view);
  });
  orders.onChange((entry) => changedOrders.set(entry.id, entry));
  const send = (res: ServerResponse, event: string, data: string) => {
    // A page that cannot keep up is dropped rather than buffered without bound: its EventSource
    // reconnects and starts again from a fresh snapshot.
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      clients.delete(res);
      res.destroy();
      return;
    }
    res.write(`event: ${event}\ndata: ${data}\n\n`);
  };
  const pusher = setInterval(() => {
    const charts = actors.chartList();
    const update = {
      at: Date.now(),
      fleet: fleet(),
      charts: charts.length !== chartsSent ? charts : undefined,
      actors: [...changedActors.values()],
      removed: [...removedActors],
      orders: [...changedOrders.values()],
    };
    chartsSent = charts.length;
    changedActors.clear();
    removedActors.clear();
    changedOrders.clear();
    const text = JSON.stringify(update);
    for (const res of clients) send(res, 'update', text);
  }, options.pushEveryMs ?? 250);
  const keepalive = setInterval(() => {
    for (const res of clients) res.write(': keepalive\n\n');
  }, 15_000);

  let origin = '';
  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) reply(res, 500, { error: (e as Error).message });
      else res.end();
    });
  });

  const reply = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only this machine's own pages (no DNS rebinding, no other site posting orders).
    const host = req.headers.host ?? '';
    if (host !== `${HOST}:${port}` && host !== `localhost:${port}`) return reply(res, 421, { error: `use ${origin}/` });
    if (req.headers.origin !== undefined && req.headers.origin !== origin && req.headers.origin !== `http://localhost:${port}`) return reply(res, 403, { error: 'cross-origin request refused' });
    const path = new URL(req.url ?? '/', origin).pathname;
    if (req.method === 'GET' && (path === '/' || path === '/live.js' || path === '/live.css')) {
      const file = path === '/' ? 'live.html' : path.slice(1);
      res.writeHead(200, { 'content-type': TYPES[file.split('.').pop()!]!, 'content-security-policy': CSP, 'cache-control': 'no-cache' });
      return void res.end(readFileSync(`${assets}${file}`));
    }
    if (req.method === 'GET' && path === '/mermaid.min.js') {
      if (!mermaid) return reply(res, 404, { error: 'mermaid is not installed: npm install mermaid@11' });
      res.writeHead(200, { 'content-type': TYPES.js!, 'cache-control': 'max-age=3600' });
      return void res.end(readFileSync(mermaid));
    }
    if (req.method === 'GET' && path === '/state') return reply(res, 200, snapshot());
    if (req.method === 'GET' && path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      send(res, 'snapshot', JSON.stringify(snapshot()));
      clients.add(res);
      req.on('close', () => clients.delete(res));
      return;
    }
    if (req.method === 'POST' && path === '/orders') {
      let body: { deviceId?: unknown; sections?: unknown };
      try {
        body = JSON.parse(await readBody(req, 64 * 1024)) as typeof body;
      } catch (e) {
        return reply(res, 400, { error: `not JSON: ${(e as Error).message}` });
      }
      if (typeof body?.deviceId !== 'string' || !devices.has(body.deviceId)) return reply(res, 400, { error: `deviceId must be one of ${[...devices.keys()].join(', ')}` });
      try {
        const entry = await orders.send(body.deviceId, parseSectionsStrict(body.sections));
        return reply(res, 201, entry);
      } catch (e) {
        return reply(res, e instanceof PayloadError ? 400 : 502, { error: (e as Error).message });
      }
    }
    reply(res, 404, { error: `no ${req.method} ${path}` });
  }

  let port: number;
  try {
    port = await listenOnLoopback(server, options.port ?? 0, 'the live view', 'choose another port, or 0 for a free one');
  } catch (e) {
    clearInterval(pusher);
    clearInterval(keepalive);
    actors.close();
    orders.close();
    throw e;
  }
  origin = `http://${HOST}:${port}`;

  const attach = (device: NgttDevice) => {
    if (!devices.has(device.deviceId)) {
      devices.set(device.deviceId, device);
      orders.watch(device);
    }
    return actors.inspector(device.deviceId);
  };
  for (const d of options.devices ?? []) attach(d);

  return {
    url: `${origin}/`,
    port,
    actors,
    orders,
    attach,
    async close() {
      clearInterval(pusher);
      clearInterval(keepalive);
      for (const res of clients) res.end();
      clients.clear();
      actors.close();
      orders.close();
      await new Promise<void>((resolveClose) => server.close(() => resolveClose()));
    },
  };
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return (await readLimited(req, limit, () => new Error(`body over ${limit} bytes`))).toString('utf8');
}
