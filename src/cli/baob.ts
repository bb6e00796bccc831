/** `ngtt baob`: publish, fetch, list and delete a device's BAOBs (spec §11) through the admin API. */
import { readFile, writeFile } from 'node:fs/promises';
import { adminBase, adminRequest, adminRequestRaw, ADMIN_OPTIONS_HELP } from './admin-client.js';
import { EXIT_USAGE, parse, runCommand, UserError } from './common.js';

const HELP = `Usage:
  ngtt baob put <device-id> <key> <file>      publish the file as the BAOB's next version
                                              (version 1 for a new key, else one more); prints it
  ngtt baob get <device-id> <key> [--out FILE]  the value (to FILE, else to stdout); version on stderr
  ngtt baob list <device-id>                  keys, versions, sizes
  ngtt baob delete <device-id> <key>          devices holding it are told to delete it

Devices download a BAOB whose version on the server is higher than theirs, and DELETE their
BAOBs the server does not have: publish the BAOBs before pointing existing devices at a new server.

${ADMIN_OPTIONS_HELP}`;

interface BaobSummary {
  key: string;
  version: number;
  size: number;
  updatedAt: number;
}

export async function runBaob(argv: string[]): Promise<number> {
  return runCommand('baob', async () => {
    const { values, positionals } = parse(argv, {
      help: { type: 'boolean', short: 'h' },
      admin: { type: 'string' },
      out: { type: 'string', short: 'o' },
    });
    const [action, deviceId, key, file, ...extra] = positionals;
    if (values.help || !action) {
      console.log(HELP);
      return values.help ? 0 : EXIT_USAGE;
    }
    if (!deviceId) throw new UserError(`${action} needs a device id`, EXIT_USAGE);
    const base = adminBase(values.admin);
    const devicePath = `/v1/admin/devices/${encodeURIComponent(deviceId)}/baobs`;
    const needs = (count: number, what: string) => {
      if (positionals.length - 1 < count) throw new UserError(`${action} needs ${what}`, EXIT_USAGE);
      if (positionals.length - 1 > count || extra.length) throw new UserError(`unexpected argument ${JSON.stringify(positionals[count + 1])}`, EXIT_USAGE);
    };
    const keyPath = () => `${devicePath}/${encodeURIComponent(key)}`;
    switch (action) {
      case 'put': {
        needs(3, 'a device id, a key and a file');
        let bytes: Buffer;
        try {
          bytes = await readFile(file);
        } catch (e) {
          throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
        const info = (await (await adminRequestRaw(base, 'PUT', keyPath(), { bytes, contentType: 'application/octet-stream' })).json()) as BaobSummary;
        console.log(`${info.key} version ${info.version} (${info.size} bytes)`);
        return 0;
      }
      case 'get': {
        needs(2, 'a device id and a key');
        const response = await adminRequestRaw(base, 'GET', keyPath(), undefined, 'application/octet-stream');
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (values.out) await writeFile(values.out, bytes);
        else process.stdout.write(bytes);
        console.error(`${key} version ${response.headers.get('x-smok-baob-version')} (${bytes.length} bytes)`);
        return 0;
      }
      case 'list': {
        needs(1, 'a device id');
        const { baobs } = (await adminRequest(base, 'GET', devicePath)) as { baobs: BaobSummary[] };
        if (baobs.length === 0) console.log(`no BAOBs for ${deviceId}`);
        for (const b of baobs) console.log(`${b.key}  version ${b.version}  ${b.size} bytes  ${new Date(b.updatedAt).toISOString()}`);
        return 0;
      }
      case 'delete': {
        needs(2, 'a device id and a key');
        await adminRequest(base, 'DELETE', keyPath());
        console.log(`${key} deleted`);
        return 0;
      }
      default:
        throw new UserError(`unknown action ${JSON.stringify(action)} (put, get, list or delete)`, EXIT_USAGE);
    }
  });
}
