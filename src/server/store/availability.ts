/**
 * The links a networked store depends on (database, broker), each up or down; the store is
 * available while all are up. One owner per store, read by the server (Store.available).
 */
export class Availability {
  private readonly down = new Map<string, string>();
  private readonly listeners = new Set<(available: boolean, reason?: string) => void>();

  available(): boolean {
    return this.down.size === 0;
  }

  /** Why it is unavailable ("database: connection refused"), or undefined. */
  reason(): string | undefined {
    return this.down.size ? [...this.down].map(([link, why]) => `${link}: ${why}`).join('; ') : undefined;
  }

  set(link: string, up: boolean, reason = 'down'): void {
    const before = this.available();
    if (up) this.down.delete(link);
    else this.down.set(link, reason);
    const after = this.available();
    if (before === after) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(after, this.reason());
      } catch {
        // A listener's fault must not stop the others (or the store).
      }
    }
  }

  onChange(listener: (available: boolean, reason?: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
