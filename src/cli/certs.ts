/** `ngtt certs`: a development PKI in a folder (src/pki/dev-pki.ts). */
import { readFile } from 'node:fs/promises';
import { createDevDevice, createDevPki, DEFAULT_SERVER_HOSTS, readDeviceIdentity } from '../pki/index.js';
import { EXIT_USAGE, integerOption, parse, runCommand, UserError } from './common.js';

const HELP = `Usage:
  ngtt certs init <dir> [--host NAME]... [--force]
      Create a CA and a server certificate in <dir> (ca.crt, ca.key, server.crt, server.key).
      --host  a DNS name or IP the server is reached by (repeatable; default ${DEFAULT_SERVER_HOSTS.join(', ')})
  ngtt certs device <device-id> --dir <dir> [--environment N] [--days N] [--force]
      Issue a device certificate with the folder's CA: <dir>/devices/<device-id>.crt and .key.
      --environment  0 production, 1 staging, 2 local development (default 2)
  ngtt certs show <cert-file>
      Print the DeviceID and Environment of a device certificate (PEM or DER).

Existing files are never overwritten without --force. Private keys are written with mode 0600.`;

export async function runCerts(argv: string[]): Promise<number> {
  return runCommand('certs', async () => {
    const { values, positionals } = parse(argv, {
      help: { type: 'boolean', short: 'h' },
      force: { type: 'boolean' },
      host: { type: 'string', multiple: true },
      dir: { type: 'string' },
      environment: { type: 'string' },
      days: { type: 'string' },
    });
    const [action, arg] = positionals;
    if (values.help || !action) {
      console.log(HELP);
      return values.help ? 0 : EXIT_USAGE;
    }
    if (positionals.length > 2) throw new UserError(`unexpected argument ${JSON.stringify(positionals[2])}`, EXIT_USAGE);
    switch (action) {
      case 'init': {
        if (!arg) throw new UserError('init needs a folder: ngtt certs init <dir>', EXIT_USAGE);
        await createDevPki(arg, { force: values.force, hosts: values.host });
        console.log(`created CA and server certificate in ${arg}`);
        return 0;
      }
      case 'device': {
        if (!arg) throw new UserError('device needs a device id: ngtt certs device <id> --dir <dir>', EXIT_USAGE);
        if (!values.dir) throw new UserError('device needs --dir <dir> (the folder made by `ngtt certs init`)', EXIT_USAGE);
        const environment = integerOption(values.environment, 'environment', 2, 0, 2);
        const validDays = integerOption(values.days, 'days', 825, 1, 36500);
        const { certPath, keyPath } = await createDevDevice(values.dir, arg, { environment, validDays, force: values.force });
        console.log(`created ${certPath} and ${keyPath}`);
        return 0;
      }
      case 'show': {
        if (!arg) throw new UserError('show needs a certificate file', EXIT_USAGE);
        const bytes = await readFile(arg);
        const text = bytes.toString('latin1');
        const identity = readDeviceIdentity(text.includes('-----BEGIN') ? text : bytes);
        console.log(`DeviceID: ${identity.deviceId}\nEnvironment: ${identity.environment ?? '(none)'}`);
        return 0;
      }
      default:
        throw new UserError(`unknown action ${JSON.stringify(action)} (init, device or show)`, EXIT_USAGE);
    }
  });
}
