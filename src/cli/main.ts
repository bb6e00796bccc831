/**
 * `ngtt` command line. Each subcommand is imported when it runs: `ngtt --help`, `certs`, `device`
 * and `order` work without the server's optional peers (fastify, amqplib) installed.
 */
import { runCommand } from './common.js';

const HELP = `ngtt — NGTT device runtime and reference server

Usage: ngtt <command> [options]

Commands:
  demo       run a live fleet on loopback (what \`npm start\` runs)
  server     run the reference NGTT server
  device     connect a device and print the orders it receives
  certs      create a development PKI and device certificates
  order      send and list orders through the admin API
  baob       publish, fetch and list a device's BAOBs through the admin API

Run \`ngtt <command> --help\` for a command's options.`;

/** Subcommands that exist so far, loaded on demand so `ngtt --help` stays fast. */
const COMMANDS: Record<string, () => Promise<(argv: string[]) => Promise<number>>> = {
  certs: async () => (await import('./certs.js')).runCerts,
  server: async () => (await import('./server.js')).runServer,
  order: async () => (await import('./order.js')).runOrder,
  baob: async () => (await import('./baob.js')).runBaob,
  demo: async () => (await import('./demo/index.js')).runDemo,
  device: async () => (await import('./device.js')).runDevice,
};

const [command, ...rest] = process.argv.slice(2);
if (!command || command === '--help' || command === '-h' || command === 'help') {
  console.log(HELP);
} else if (COMMANDS[command]) {
  const load = COMMANDS[command];
  process.exitCode = await runCommand(command, async () => (await load())(rest));
} else {
  console.log(HELP);
  console.error(`\nngtt: '${command}' is not available yet in this version`);
  process.exitCode = 2;
}
