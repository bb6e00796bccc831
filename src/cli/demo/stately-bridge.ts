/**
 * `ngtt demo --inspect`: the bridge to Stately's inspector (@statelyai/inspect). Its page frames
 * https://stately.ai/inspect, so it needs internet; the live view is the offline alternative.
 *
 * Instead of the package's createInspectorServer (which listens on every interface, crashes on a
 * busy port and replays only its last 200 messages), this bridge listens on 127.0.0.1, fails in
 * one line, and gives a page that connects late every live actor and its latest snapshot first.
 */
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { NgttDeviceOptions } from '../../device/ngtt-device.js';
import type { WebSocket as WsSocket, WebSocketServer as WsServer } from 'ws';
import { listenOnLoopback, LOOPBACK } from '../../live/listen.js';

export interface StatelyBridge {
  /** The page to open. */
  url: string;
  inspect: NgttDeviceOptions['inspect'];
  stop(): void;
}

/** What the bridge reads of the inspector's messages. */
interface Message {
  type?: string;
  sessionId?: string;
  snapshot?: { status?: string };
}

const bridgePage = (wsUrl: string) => `<!doctype html>
<html><head><meta charset="utf-8"><title>Stately Inspector (NGTT)</title>
<style>*{margin:0;padding:0}html,body{height:100%}iframe{width:100%;height:100%;border:none}</style></head>
<body><iframe id="inspector" src="https://stately.ai/inspect"></iframe>
<script>
  // Relays the bridge's messages to the inspector once it says it is ready.
  const iframe = document.getElementById('inspector');
  const buffer = [];
  let connected = false;
  window.addEventListener('message', (e) => {
    if (e.data && e.data.type === '@statelyai.connected') {
      connected = true;
      for (const m of buffer.splice(0)) iframe.contentWindow.postMessage(m, '*');
    }
  });
  const ws = new WebSocket(${JSON.stringify(wsUrl)});
  ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (connected) iframe.contentWindow.postMessage(data, '*');
    else buffer.push(data);
  };
</script></body></html>`;

export async function startStatelyBridge(port: number): Promise<StatelyBridge> {
  // A missing optional peer fails here, named with its install command by the CLI.
  const { createWebSocketInspector } = await import('@statelyai/inspect');
  // The WebSocket library that @statelyai/inspect itself depends on (so found wherever it is installed).
  const { WebSocketServer, WebSocket } = createRequire(import.meta.resolve('@statelyai/inspect'))('ws') as typeof import('ws');

  // The current picture: each live actor's announcement and its latest snapshot, oldest actor first.
  const actors = new Map<string, string>();
  const snapshots = new Map<string, string>();
  const http = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(bridgePage(`ws://${LOOPBACK}:${boundPort}`));
  });
  const wss: WsServer = new WebSocketServer({ server: http });
  // It repeats the HTTP server's errors; a failed listen is reported by listenOnLoopback.
  wss.on('error', () => {});
  wss.on('connection', (ws: WsSocket) => {
    for (const [sessionId, actor] of actors) {
      ws.send(actor);
      const snapshot = snapshots.get(sessionId);
      if (snapshot) ws.send(snapshot);
    }
    ws.on('message', (data) => {
      const text = String(data);
      let message: Message;
      try {
        message = JSON.parse(text) as Message;
      } catch {
        return;
      }
      const id = message.sessionId;
      if (id && message.type === '@xstate.actor') actors.set(id, text);
      else if (id && message.type === '@xstate.snapshot') {
        if (message.snapshot?.status === 'active' || message.snapshot?.status === undefined) snapshots.set(id, text);
        else {
          actors.delete(id);
          snapshots.delete(id);
        }
      }
      for (const client of wss.clients) if (client !== ws && client.readyState === WebSocket.OPEN) client.send(text);
    });
  });
  const boundPort = await listenOnLoopback(http, port, 'the inspector bridge', 'choose another with --inspect-port');
  const inspector = createWebSocketInspector({ url: `ws://${LOOPBACK}:${boundPort}` });
  return {
    url: `http://${LOOPBACK}:${boundPort}`,
    inspect: inspector.inspect as NgttDeviceOptions['inspect'],
    stop() {
      inspector.stop();
      for (const client of wss.clients) client.terminate();
      wss.close();
      http.close();
    },
  };
}
