/** `ngtt order`: send and list a device's orders through the admin API. */
import { adminBase, adminRequest as call, ADMIN_OPTIONS_HELP } from './admin-client.js';
import { EXIT_USAGE, parse, runCommand, UserError } from './common.js';

const HELP = `Usage:
  ngtt order send <device-id> '<sections as JSON>'
      e.g. ngtt order send dev-1 '[{"orders": [{"type": "read", "path": "W1"}], "disposition": 0}]'
      (a single section object is accepted too). Prints the order id.
  ngtt order list <device-id> [--state queued|in-flight|confirmed|rejected|delivered] [--limit N]
      one line per order; under it, each message order and whether the device received it.

${ADMIN_OPTIONS_HELP}`;

interface OrderSummary {
  id: string;
  state: string;
  enqueuedAt: number;
  deliveries: number;
  reason: string | null;
  messages?: { uuid: string; receivedAt: number | null }[];
}


export async function runOrder(argv: string[]): Promise<number> {
  return runCommand('order', async () => {
    const { values, positionals } = parse(argv, {
      help: { type: 'boolean', short: 'h' },
      admin: { type: 'string' },
      state: { type: 'string' },
      limit: { type: 'string' },
    });
    const [action, deviceId, json, ...extra] = positionals;
    if (values.help || !action) {
      console.log(HELP);
      return values.help ? 0 : EXIT_USAGE;
    }
    if (!deviceId) throw new UserError(`${action} needs a device id`, EXIT_USAGE);
    if (extra.length) throw new UserError(`unexpected argument ${JSON.stringify(extra[0])} (quote the JSON)`, EXIT_USAGE);
    const base = adminBase(values.admin);
    const devicePath = `/v1/admin/devices/${encodeURIComponent(deviceId)}/orders`;
    switch (action) {
      case 'send': {
        if (json === undefined) throw new UserError('send needs the sections as JSON', EXIT_USAGE);
        let sections: unknown;
        try {
          sections = JSON.parse(json);
        } catch (e) {
          throw new UserError(`the sections are not valid JSON: ${(e as Error).message}`, EXIT_USAGE);
        }
        if (sections && typeof sections === 'object' && !Array.isArray(sections)) sections = [sections];
        const { id } = (await call(base, 'POST', devicePath, sections)) as { id: string };
        console.log(id);
        return 0;
      }
      case 'list': {
        const query = new URLSearchParams();
        if (values.state) query.set('state', values.state);
        if (values.limit) query.set('limit', values.limit);
        const { orders } = (await call(base, 'GET', `${devicePath}${query.size ? `?${query}` : ''}`)) as { orders: OrderSummary[] };
        if (orders.length === 0) console.log(`no orders for ${deviceId}`);
        for (const o of orders) {
          console.log(`${o.id}  ${o.state.padEnd(9)}  ${new Date(o.enqueuedAt).toISOString()}  deliveries=${o.deliveries}${o.reason ? `  reason=${o.reason}` : ''}`);
          // Message orders: whether the device said it received them (POST /v1/device/orders/message/<uuid>).
          for (const m of o.messages ?? []) console.log(`    message ${m.uuid}  ${m.receivedAt === null ? 'not received yet' : `received ${new Date(m.receivedAt).toISOString()}`}`);
        }
        return 0;
      }
      default:
        throw new UserError(`unknown action ${JSON.stringify(action)} (send or list)`, EXIT_USAGE);
    }
  });
}
