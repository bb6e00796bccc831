/**
 * A private RabbitMQ node for one test file, so a test may take its broker down
 * (`rabbitmqctl stop_app` / `start_app`) without touching the shared broker on 5672 that other
 * test files use in parallel. The node runs as a child process with its own node name, free
 * ports (AMQP and Erlang distribution, both on 127.0.0.1), its own data and log folders and its
 * own Erlang cookie (HOME is its temp folder); `close()` stops it and deletes the folder, and
 * is registered as a teardown, so it also runs when the test fails.
 *
 * The packaged `/usr/sbin/rabbitmq-server` wrapper switches to the `rabbitmq` user with `su`,
 * so the node is started from `/usr/lib/rabbitmq/bin` directly (as the current user).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { killOnExit } from './reap.js';

const run = promisify(execFile);
const BIN = process.env.NGTT_TEST_RABBITMQ_BIN ?? '/usr/lib/rabbitmq/bin';

export interface PrivateBroker {
  url: string;
  node: string;
  /** `rabbitmqctl stop_app`: every connection is closed, the node refuses new ones. */
  stopApp(): Promise<void>;
  /** `rabbitmqctl start_app` (retried while the old listener socket is still being released). */
  startApp(): Promise<void>;
  close(): Promise<void>;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function canConnect(url: string): Promise<boolean> {
  try {
    const c = await amqp.connect(url);
    await c.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts the node; resolves to it, or to a reason why it could not be started (the test skips). */
export async function startPrivateBroker(t: Tap, timeoutMs = 60_000): Promise<PrivateBroker | string> {
  if (!existsSync(join(BIN, 'rabbitmq-server'))) return `no RabbitMQ server scripts in ${BIN} (set NGTT_TEST_RABBITMQ_BIN); cannot start a private broker`;
  const dir = await mkdtemp(join(tmpdir(), 'ngtt-private-rabbitmq-'));
  const node = `ngtt-test-${process.pid}@localhost`;
  const [amqpPort, distPort] = [await freePort(), await freePort()];
  await writeFile(join(dir, 'enabled_plugins'), '[].\n');
  const env = {
    ...process.env,
    HOME: dir, // its own .erlang.cookie, shared with the rabbitmqctl calls below
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'pid'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
  };
  let output = '';
  // Its own process group: the script starts the Erlang VM as a child, and both must go if
  // this test process ends before its teardown ran.
  const child: ChildProcess = spawn(join(BIN, 'rabbitmq-server'), [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const forget = killOnExit(() => {
    process.kill(-child.pid!, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });
  child.stdout!.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-4000)));
  child.stderr!.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => {});
  void exited.then(() => {
    // The script is gone; make sure the VM went with it.
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // The whole group has exited.
    }
  });
  const ctl = (...args: string[]) => run(join(BIN, 'rabbitmqctl'), ['-q', '-n', node, ...args], { env, cwd: dir, timeout: 30_000 });
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (child.exitCode === null && child.signalCode === null) {
      await ctl('stop').catch(() => {});
      const killed = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killed);
    }
    await rm(dir, { recursive: true, force: true });
    forget();
  };
  t.teardown(close);

  const until = Date.now() + timeoutMs;
  while (!(await canConnect(url))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > until) {
      await close();
      return `a private RabbitMQ node could not be started (${child.exitCode !== null ? `exited ${child.exitCode}` : 'not accepting AMQP'}): ${output.trim().split('\n').slice(-3).join(' ')}`;
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    url,
    node,
    close,
    stopApp: async () => {
      await ctl('stop_app');
    },
    startApp: async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await ctl('start_app');
          return;
        } catch (e) {
          if (attempt >= 10) throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    },
  };
}
