/** A server in a child process (so a test can SIGKILL it): config from NGTT_TEST_CONFIG, ports on stdout. */
import { pino } from 'pino';
import { startServer } from '../../src/server/index.js';

const config = JSON.parse(process.env.NGTT_TEST_CONFIG ?? '{}') as { dataDir: string; ca: string; cert: string; key: string };
const server = await startServer({
  tls: { ca: config.ca, cert: config.cert, key: config.key },
  dataDir: config.dataDir,
  ngttPort: 0,
  httpsPort: 0,
  adminPort: 0,
  logger: pino({ level: 'silent' }),
});
process.stdout.write(JSON.stringify({ ngttPort: server.ngttPort, httpsPort: server.httpsPort, adminPort: server.adminPort }) + '\n');
