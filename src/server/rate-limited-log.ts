/**
 * Warnings that an attacker can trigger at will (refused connections, failed TLS handshakes)
 * must not flood the log: the first event of each reason in a quiet period is logged with its
 * detail, later ones are only counted and summed up in one line per interval.
 */
import type { Logger } from 'pino';

export class RateLimitedLog {
  private readonly counts = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private windowStart = 0;

  constructor(
    private readonly logger: Logger,
    /** The message of every line, e.g. 'connection refused'. */
    private readonly message: string,
    private readonly intervalMs = 10_000,
  ) {}

  note(reason: string, detail: Record<string, unknown>): void {
    const seen = this.counts.get(reason);
    if (seen === undefined) {
      this.logger.warn({ reason, ...detail }, this.message);
      this.counts.set(reason, 0);
    } else {
      this.counts.set(reason, seen + 1);
    }
    if (!this.timer) {
      this.windowStart = Date.now();
      this.timer = setTimeout(() => this.flush(), this.intervalMs).unref();
    }
  }

  /** Logs what was only counted, then starts a new quiet period. */
  private flush(): void {
    this.timer = null;
    const suppressed = Object.fromEntries([...this.counts].filter(([, n]) => n > 0));
    this.counts.clear();
    if (Object.keys(suppressed).length) {
      this.logger.warn({ suppressed, overMs: Date.now() - this.windowStart }, `${this.message} (more, not logged one by one)`);
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.flush();
  }
}
