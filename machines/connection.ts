/**
 * NGTT connection life cycle (spec §5): one machine per device, owning one socket at a time.
 * NgttDevice (under the supervisor) and NgttConnection (NGTT alone) both run it: keepalive and
 * reconnect policy live here and nowhere else.
 *
 *   disconnected ──CONNECT──▶ session.connecting ──SOCKET.OPEN──▶ session.authenticated
 *        ▲                      │ (timeout, SOCKET.CLOSED)           │ (SOCKET.CLOSED, keepalive dead)
 *        │                      ▼                                    ▼
 *        │                   backoff ◀───────────────────────────────┘
 *        │                      │ after 1 s, 2 s, 4 s … 60 s (±20 % jitter) ──▶ session.connecting
 *   CLOSE from anywhere ──▶ session.closing (socket told to CLOSE, drains) ──▶ closed (final)
 *
 * - `socket` (provided callback actor) is invoked for the whole `session`: it opens TLS (giving
 *   up after `connectTimeoutMs`, from its input), reports SOCKET.OPEN once the handshake (which
 *   is the authentication) succeeds, SOCKET.FRAMES with the frames of each read, SOCKET.SENT with
 *   the frames flushed to the kernel (not merely queued), SOCKET.CLOSED when the socket is gone. It
 *   receives SEND {frame} and CLOSE, and holds frames back while the socket needs to drain.
 *   Leaving `session` stops it (its cleanup must destroy the socket).
 * - authenticated: sends FETCH_ORDERS first when orders are wanted; resets the backoff; keeps the
 *   link alive: PING after `pingIdleMs` without sending; dead when a PING is outstanding and
 *   nothing else was sent for `pingDeadMs`, or nothing at all was received for `receiveDeadMs`.
 *   The PING itself does not count as "sent" for the dead rule, so with an idle link the PING
 *   goes out at 30 s and the connection is declared dead at 90 s.
 * - Everything the outside needs is reported with the `report` action (default: sendParent):
 *   CONNECTION.STATE on entering each state (with the backoff delay, or why the link went
 *   down), CONNECTION.FRAMES for frames received. Frames travel in groups (what one read
 *   brought): a busy link costs an event per read, not per frame. What was flushed (SOCKET.SENT)
 *   only drives the keepalive clock; nobody outside needs it, so it is not reported. `epoch`
 *   numbers the successful connections so that replies meant for an old one can be told apart.
 * - SEND while not authenticated is dropped: the senders (upload machine, orders) learn from
 *   CONNECTION.STATE that nothing sent is confirmed and resend on the next connection.
 */
import { assign, enqueueActions, fromCallback, sendParent, sendTo, setup } from 'xstate';
import { FrameType } from '../src/protocol/frames.js';
import { type BackoffOptions, type InFrame, type OutFrame, type Random, DEFAULT_BACKOFF, backoffDelay, withDefaults } from './common.js';

/** The tid of our keepalive PING. One is outstanding at most, so one tid is reserved for it (upload uses 1..0x7FFC, the logs' receipt PING 0x7FFD, the BAOB sync 0x7FFE). */
export const PING_TID = 0x7fff;

export interface ConnectionTimings {
  /** Send a PING after this long without sending anything (spec: 30 s). */
  pingIdleMs: number;
  /** Dead when a PING is outstanding and nothing else was sent for this long (spec: 90 s). */
  pingDeadMs: number;
  /** Dead when nothing was received for this long (spec: 120 s). */
  receiveDeadMs: number;
  /** Give up on a connect (TCP + TLS) that has not opened after this long. Not in the spec; a hung connect must not block forever. */
  connectTimeoutMs: number;
  /** After CLOSE, how long the socket may take to drain before it is destroyed. */
  closeTimeoutMs: number;
  backoff: BackoffOptions;
}

export const DEFAULT_CONNECTION_TIMINGS: ConnectionTimings = {
  pingIdleMs: 30_000,
  pingDeadMs: 90_000,
  receiveDeadMs: 120_000,
  connectTimeoutMs: 30_000,
  closeTimeoutMs: 5_000,
  backoff: DEFAULT_BACKOFF,
};

export interface ConnectionInput {
  /** Send FETCH_ORDERS after each connect (spec §5.1). Default true. */
  wantOrders?: boolean;
  /** Jitter source for the backoff. */
  random: Random;
  timings?: Partial<Omit<ConnectionTimings, 'backoff'>> & { backoff?: Partial<BackoffOptions> };
}

export interface ConnectionContext {
  wantOrders: boolean;
  random: Random;
  timings: ConnectionTimings;
  /** Connect attempts that failed since the last successful one; drives the backoff. */
  failures: number;
  /** The delay of the current backoff (for the inspector and tests). */
  backoffMs: number;
  /** Number of connections established so far; the current one's number while authenticated. */
  epoch: number;
  /** How long the outstanding PING may still wait (pingDeadMs − pingIdleMs right after sending it). */
  pingWaitMs: number;
}

/** What the socket actor is told. */
export type SocketCommand = { type: 'SEND'; frame: OutFrame } | { type: 'CLOSE' };
export interface SocketInput {
  /** 1 for the first attempt after a success (or at start), then 2, 3… */
  attempt: number;
  /** Give up on TCP + TLS after this long (the machine's `connectTimeoutMs`). */
  connectTimeoutMs: number;
}

/** A frame that went out. */
export interface SentFrame {
  type: number;
  tid: number;
}

/** What the socket actor reports. */
export type SocketEvent =
  | { type: 'SOCKET.OPEN' }
  /** Frames received (in order; one read's worth). */
  | { type: 'SOCKET.FRAMES'; frames: InFrame[] }
  /** Frames flushed to the kernel (their types tell the PING apart). */
  | { type: 'SOCKET.SENT'; frames: SentFrame[]; bytes: number }
  | { type: 'SOCKET.CLOSED'; error?: string };

export type ConnectionEvent =
  | { type: 'CONNECT' }
  | { type: 'SEND'; frame: OutFrame }
  | { type: 'CLOSE' }
  | SocketEvent;

/** The connection's state, as reported (NgttDevice adds `disabled` for NGTT off). */
export type ConnectionState = 'disconnected' | 'connecting' | 'authenticated' | 'closing' | 'backoff' | 'closed';

/** What the connection reports to its parent (the `report` action). */
export type ConnectionReport =
  /** Entered `state`. `epoch`: the current (authenticated) or last connection; `delayMs`/`reason` in backoff. */
  | { type: 'CONNECTION.STATE'; state: ConnectionState; epoch: number; delayMs?: number; reason?: string }
  /** Frames received on connection `epoch` (PING echoes left out: they are the connection's own). */
  | { type: 'CONNECTION.FRAMES'; epoch: number; frames: InFrame[] };

function downReason(event: { type: string; error?: string }): string {
  if (event.type === 'SOCKET.CLOSED') return event.error ? `socket closed: ${event.error}` : 'socket closed';
  if (event.type.includes('connectTimeout')) return 'connect timed out';
  if (event.type.includes('pingWait')) return 'PING not answered';
  if (event.type.includes('receiveDead')) return 'nothing received';
  if (event.type.startsWith('xstate.error')) return 'socket failed';
  return event.type;
}

/** `report` CONNECTION.STATE `name` (an entry action). */
const entered = (name: ConnectionState) => ({
  type: 'report' as const,
  params: ({ context }: { context: ConnectionContext }): ConnectionReport => ({ type: 'CONNECTION.STATE', state: name, epoch: context.epoch }),
});

/** Our keepalive PING or its echo (a PING with another tid, such as the logs' receipt, is the outside's). */
const isPing = (f: { type: number; tid: number }) => f.type === FrameType.PING && f.tid === PING_TID;

export const connectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
  },
  actors: {
    socket: fromCallback<SocketCommand, SocketInput>(() => {
      throw new Error('connection machine: provide the `socket` actor');
    }),
  },
  actions: {
    /** Tell the outside; by default the parent (the supervisor). */
    report: sendParent((_, params: ConnectionReport) => params),
    sendFrame: sendTo('socket', ({ event }) => {
      if (event.type !== 'SEND') throw new Error(`sendFrame on ${event.type}`);
      return { type: 'SEND', frame: event.frame } satisfies SocketCommand;
    }),
    sendPing: sendTo('socket', { type: 'SEND', frame: { type: FrameType.PING, tid: PING_TID } } satisfies SocketCommand),
    /** Spec §5.1: without FETCH_ORDERS the server pushes no orders on this connection. */
    fetchOrders: enqueueActions(({ enqueue, context }) => {
      if (context.wantOrders) enqueue.sendTo('socket', { type: 'SEND', frame: { type: FrameType.FETCH_ORDERS, tid: 0 } } satisfies SocketCommand);
    }),
    closeSocket: sendTo('socket', { type: 'CLOSE' } satisfies SocketCommand),
    /** A connection is established: the backoff starts over, a new epoch begins. */
    connected: assign({ failures: 0, epoch: ({ context }) => context.epoch + 1 }),
    /** Time the outstanding PING may still wait: `pingDeadMs` counted from the last (non-PING) send. */
    armPingWait: assign({ pingWaitMs: (_, params: { sinceLastSendMs: number }) => params.sinceLastSendMs }),
    nextBackoff: assign(({ context }) => {
      const failures = context.failures + 1;
      return { failures, backoffMs: backoffDelay(failures, context.timings.backoff, context.random) };
    }),
  },
  guards: {
    /** A write other than our own PING: it resets the "sent nothing" clock. */
    sentData: ({ event }) => event.type === 'SOCKET.SENT' && event.frames.some((f) => !isPing(f)),
    hasPingEcho: ({ event }) => event.type === 'SOCKET.FRAMES' && event.frames.some(isPing),
    /** Frames other than PING echoes, for the outside. */
    hasNews: ({ event }) => event.type === 'SOCKET.FRAMES' && event.frames.some((f) => !isPing(f)),
  },
  delays: {
    connectTimeout: ({ context }) => context.timings.connectTimeoutMs,
    closeTimeout: ({ context }) => context.timings.closeTimeoutMs,
    pingIdle: ({ context }) => context.timings.pingIdleMs,
    pingWait: ({ context }) => context.pingWaitMs,
    receiveDead: ({ context }) => context.timings.receiveDeadMs,
    backoff: ({ context }) => context.backoffMs,
  },
}).createMachine({
  id: 'connection',
  context: ({ input }) => ({
    wantOrders: input.wantOrders ?? true,
    random: input.random,
    timings: { ...withDefaults(DEFAULT_CONNECTION_TIMINGS, input.timings as Partial<ConnectionTimings>), backoff: withDefaults(DEFAULT_BACKOFF, input.timings?.backoff) },
    failures: 0,
    backoffMs: 0,
    epoch: 0,
    pingWaitMs: 0,
  }),
  initial: 'disconnected',
  states: {
    disconnected: {
      on: { CONNECT: 'session', CLOSE: 'closed' },
    },
    session: {
      invoke: {
        id: 'socket',
        src: 'socket',
        input: ({ context }) => ({ attempt: context.failures + 1, connectTimeoutMs: context.timings.connectTimeoutMs }),
        onError: '#connection.backoff',
      },
      on: {
        'SOCKET.CLOSED': '#connection.backoff',
        CLOSE: '.closing',
      },
      initial: 'connecting',
      states: {
        connecting: {
          entry: entered('connecting'),
          on: { 'SOCKET.OPEN': 'authenticated' },
          after: { connectTimeout: '#connection.backoff' },
        },
        authenticated: {
          type: 'parallel',
          entry: ['connected', 'fetchOrders', entered('authenticated')],
          on: {
            SEND: { actions: 'sendFrame' },
          },
          states: {
            sending: {
              initial: 'active',
              states: {
                active: {
                  on: { 'SOCKET.SENT': { guard: 'sentData', target: 'active', reenter: true } },
                  after: {
                    pingIdle: {
                      target: 'pingOutstanding',
                      actions: [
                        'sendPing',
                        { type: 'armPingWait', params: ({ context: { timings: t } }) => ({ sinceLastSendMs: t.pingDeadMs - t.pingIdleMs }) },
                      ],
                    },
                  },
                },
                pingOutstanding: {
                  on: {
                    'SOCKET.SENT': {
                      guard: 'sentData',
                      target: 'pingOutstanding',
                      reenter: true,
                      actions: { type: 'armPingWait', params: ({ context }) => ({ sinceLastSendMs: context.timings.pingDeadMs }) },
                    },
                    'SOCKET.FRAMES': { guard: 'hasPingEcho', target: 'active' },
                  },
                  after: { pingWait: '#connection.backoff' },
                },
              },
            },
            receiving: {
              initial: 'listening',
              states: {
                listening: {
                  on: {
                    'SOCKET.FRAMES': [
                      {
                        guard: 'hasNews',
                        target: 'listening',
                        reenter: true,
                        actions: {
                          type: 'report',
                          // PING echoes are the connection's own business.
                          params: ({ context, event }) => ({ type: 'CONNECTION.FRAMES', epoch: context.epoch, frames: event.frames.filter((f) => !isPing(f)) }),
                        },
                      },
                      { target: 'listening', reenter: true },
                    ],
                  },
                  after: { receiveDead: '#connection.backoff' },
                },
              },
            },
          },
        },
        closing: {
          entry: ['closeSocket', entered('closing')],
          on: { 'SOCKET.CLOSED': '#connection.closed', CLOSE: {} },
          after: { closeTimeout: '#connection.closed' },
        },
      },
    },
    backoff: {
      entry: [
        'nextBackoff',
        {
          type: 'report',
          params: ({ context, event }) => ({
            type: 'CONNECTION.STATE',
            state: 'backoff',
            epoch: context.epoch,
            delayMs: context.backoffMs,
            reason: downReason(event as { type: string; error?: string }),
          }),
        },
      ],
      after: { backoff: 'session' },
      on: { CLOSE: 'closed' },
    },
    closed: {
      type: 'final',
      entry: entered('closed'),
    },
  },
});
