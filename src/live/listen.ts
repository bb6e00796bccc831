/** Listening on loopback, with a one-line error when the port cannot be had. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export const LOOPBACK = '127.0.0.1';

/** The port is taken, or the address cannot be had: the caller's to fix, in one line. */
export class ListenError extends Error {
  // The CLI shows UserErrors as one line without a stack trace.
  override name = 'UserError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Listens on 127.0.0.1:port (0: a free one) and resolves to the port; `what` and `hint` word the error. */
export function listenOnLoopback(server: Server, port: number, what: string, hint: string): Promise<number> {
  return new Promise((resolveListen, rejectListen) => {
    const failed = (e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EACCES' ? 'permission denied' : e.message;
      rejectListen(new ListenError(`${what} cannot listen on ${LOOPBACK}:${port}: ${why} (${hint})`, e.code ?? 'ELISTEN'));
    };
    server.once('error', failed);
    server.listen(port, LOOPBACK, () => {
      server.off('error', failed);
      resolveListen((server.address() as AddressInfo).port);
    });
  });
}
