/** Starts bench/lib/backend.ts as a child process and talks to it. */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { BENCH_DIR, type BenchPki } from './common.js';
import type { BackendEvent, BackendRequest } from './backend.js';

type Ready = Extract<BackendEvent, { type: 'ready' }>;
type Stats = Extract<BackendEvent, { type: 'stats' }>;

export class Backend {
  /** Order id → when the store saw its acknowledgement (NGTT, MQTT) or a poll took it (HTTPS). */
  readonly settledAt = new Map<string, number>();
  readonly deliveredAt = new Map<string, number>();
  private readonly waiters = new Map<string, (e: BackendEvent) => void>();
  private readonly settleWaiters = new Map<string, () => void>();

  private constructor(
    private readonly child: ChildProcess,
    readonly ports: Ready,
  ) {
    child.on('message', (e: BackendEvent) => {
      if (e.type === 'settled') {
        this.settledAt.set(e.id, e.t);
        this.settleWaiters.get(e.id)?.();
      } else if (e.type === 'delivered') {
        for (const id of e.ids) {
          this.deliveredAt.set(id, e.t);
          this.settleWaiters.get(id)?.();
        }
      } else {
        const key = e.type === 'enqueued' ? `enqueued:${e.seq}` : e.type;
        const w = this.waiters.get(key);
        this.waiters.delete(key);
        w?.(e);
      }
    });
  }

  static async start(pki: BenchPki, mqttPort: number | null): Promise<Backend> {
    // BENCH_PROFILE=<dir>: the server side writes a CPU profile there (node --cpu-prof).
    const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
    const child = fork(join(BENCH_DIR, 'lib', 'backend.ts'), [], { execArgv: ['--import', 'tsx', ...profile], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const ready = await new Promise<Ready>((resolve, reject) => {
      child.once('message', (e: BackendEvent) => (e.type === 'ready' ? resolve(e) : reject(new Error(`unexpected ${e.type}`))));
      child.once('exit', (code) => reject(new Error(`backend exited with ${code}`)));
      child.send({ type: 'init', pki, mqttPort } satisfies BackendRequest);
    });
    return new Backend(child, ready);
  }

  private request<T extends BackendEvent>(m: BackendRequest, key: string): Promise<T> {
    return new Promise((resolve) => {
      this.waiters.set(key, resolve as (e: BackendEvent) => void);
      this.child.send(m);
    });
  }

  enqueue(seq: number, deviceId: string, via: 'ngtt' | 'mqtt'): Promise<{ id: string; t0: number }> {
    return this.request<Extract<BackendEvent, { type: 'enqueued' }>>({ type: 'enqueue', seq, deviceId, via }, `enqueued:${seq}`);
  }

  /** Resolves once the backend reported the order settled (or delivered, for HTTPS). */
  settled(id: string): Promise<void> {
    if (this.settledAt.has(id) || this.deliveredAt.has(id)) return Promise.resolve();
    return new Promise((resolve) =>
      this.settleWaiters.set(id, () => {
        this.settleWaiters.delete(id);
        resolve();
      }),
    );
  }

  stats(): Promise<Stats> {
    return this.request<Stats>({ type: 'stats' }, 'stats');
  }

  /** Data batches the store holds (committed), and how many values the newest one has. */
  stored(): Promise<{ batches: number; lastValues: number }> {
    return this.request<Extract<BackendEvent, { type: 'stored' }>>({ type: 'stored' }, 'stored');
  }

  async close(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    await this.request({ type: 'close' }, 'closed');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (this.child.exitCode === null) this.child.kill();
  }
}
