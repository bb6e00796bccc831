/**
 * Issues a steady mix of orders to the demo devices through the server's admin API, as an
 * operator or a backend would: writes, reads, waits and a sysctl, round-robin over devices.
 */
import { adminRequest } from '../admin-client.js';

type Sections = { orders: Record<string, unknown>[]; disposition: 0 | 1 }[];

/** The rotation of order kinds; `n` varies the values. */
const TEMPLATES: ((n: number) => Sections)[] = [
  (n) => [{ orders: [{ type: 'write', path: 'W1', value: 1000 + ((n * 37) % 800), advise: 1 }], disposition: 0 }],
  () => [{ orders: [{ type: 'read', path: 'f2' }, { type: 'read', path: 'd3' }], disposition: 0 }],
  (n) => [
    { orders: [{ type: 'wait', time: 0.5 }], disposition: 1 },
    { orders: [{ type: 'write', path: 'W1', value: 900 + n }, { type: 'read', path: 'W1' }], disposition: 0 },
  ],
  () => [{ orders: [{ type: 'sysctl', op_type: 'reboot', op_args: {} }], disposition: 1 }],
];

export class OrderIssuer {
  issued = 0;
  failed = 0;
  lastError: string | undefined;
  private n = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly adminUrl: string,
    private readonly deviceIds: string[],
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.inFlight = this.issueNext();
    }, this.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.inFlight;
  }

  /** One order to the next device; failures are counted and shown, not fatal. */
  async issueNext(): Promise<void> {
    const n = this.n++;
    const deviceId = this.deviceIds[n % this.deviceIds.length];
    const sections = TEMPLATES[Math.floor(n / this.deviceIds.length) % TEMPLATES.length](n);
    try {
      await adminRequest(this.adminUrl, 'POST', `/v1/admin/devices/${encodeURIComponent(deviceId)}/orders`, sections);
      this.issued++;
    } catch (e) {
      this.failed++;
      this.lastError = (e as Error).message;
    }
  }
}
