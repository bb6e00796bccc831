/**
 * Runs orders (spec §6): sections one after another, the orders of a section in parallel,
 * through the pathpoint handlers the device software registers. It knows nothing of NGTT or
 * HTTPS: the runtime decides what to confirm, reject or upload from the result.
 *
 * Retries: an order with advise ADVISE (or none) gets one attempt; FORCE gets up to
 * `forceAttempts` (default 5), waiting `retryDelayMs` (default 250 ms) before the second and
 * doubling each time (the shared backoff, machines/common.ts). Only handler failures are
 * retried; a value of the wrong type is not. A write whose `stale_after` has passed is
 * dropped, checked again before every attempt.
 *
 * Attempts never overlap: an attempt that does not answer within `attemptTimeoutMs` has its
 * signal aborted, and the next one starts only once the handler has returned. A handler that
 * does not return within `abortGraceMs` of the abort is abandoned, reported (`onFault`) and
 * not retried, so two calls for one order never run at once. The whole execution stops when
 * the caller's signal aborts (the device closing): handlers are aborted, `wait` orders end.
 * `disposition` is about joining sections of different orders, which is the caller's business;
 * the executor runs the sections it is given.
 */
import {
  Advise,
  ERROR_CODES,
  type Order,
  type ParsedSections,
  type PathpointScalar,
  type PathpointValue,
  type ReadErrorCode,
  type Section,
} from '../protocol/index.js';
import { backoffDelay, type BackoffOptions } from '../../machines/common.js';
import { valueProblem } from './pathpoint-types.js';

/** Thrown by a handler to say how a read or write failed; any other error counts as `malformed`. */
export class PathpointError extends Error {
  override name = 'PathpointError';
  constructor(
    readonly code: ReadErrorCode,
    message: string = code,
  ) {
    super(message);
  }
}

export interface HandlerContext {
  /** Aborted when the attempt times out, or the order is cancelled (the device closing): stop working on it. */
  signal: AbortSignal;
}

type MaybePromise<T> = T | Promise<T>;

export interface OrderHandlers {
  onRead(path: string, context: HandlerContext): MaybePromise<PathpointScalar>;
  onWrite(path: string, value: PathpointScalar, context: HandlerContext): MaybePromise<void>;
  onMessage?(uuid: string, context: HandlerContext): MaybePromise<void>;
  onSysctl?(opType: string, opArgs: unknown, context: HandlerContext): MaybePromise<void>;
}

/** The subset of a pino logger the executor uses. */
export interface ExecutorLogger {
  warn(details: object, message: string): void;
  debug(details: object, message: string): void;
}

export interface ExecutorOptions {
  handlers: OrderHandlers;
  /**
   * Called with every read result, `[ts, value]` or `[false, ts, code]`. Awaited: return the
   * spool's push() so a reading is stored before its order counts as done.
   */
  onReading?: (path: string, value: PathpointValue) => MaybePromise<void>;
  /** Waits `ms`; rejects when `signal` aborts. Default: an unref'd setTimeout. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Unix ms. Default Date.now. */
  now?: () => number;
  forceAttempts?: number;
  retryDelayMs?: number;
  /** Per attempt; the handler's signal is aborted and the attempt fails with `timeout`. Default 30 s. */
  attemptTimeoutMs?: number;
  /** How long an aborted handler may take to return before it is abandoned (not retried). Default min(5 s, attemptTimeoutMs). */
  abortGraceMs?: number;
  /** Told about handler trouble that is a bug rather than an answer: an exception other than PathpointError, a handler that ignores its abort. */
  onFault?: (error: Error) => void;
  log?: ExecutorLogger;
}

export type OrderStatus = 'done' | 'failed' | 'dropped';

export interface OrderOutcome {
  /** Position in the section list and in the section. */
  section: number;
  index: number;
  order: Order;
  status: OrderStatus;
  attempts: number;
  /** For a read: what was reported. */
  value?: PathpointValue;
  code?: ReadErrorCode;
  error?: string;
}

export interface ExecutionResult {
  /** No order failed (dropped stale writes and skipped unknown orders are not failures). */
  ok: boolean;
  outcomes: OrderOutcome[];
  skipped: ParsedSections['skipped'];
}

export const DEFAULT_FORCE_ATTEMPTS = 5;
export const DEFAULT_RETRY_DELAY_MS = 250;
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 30_000;

/** An abortable wait that does not keep the process alive. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason ?? new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
const NO_LOG: ExecutorLogger = { warn() {}, debug() {} };

/** A failed attempt: `retry` when trying again may help (the handler failed, not the value). */
class AttemptFailure {
  constructor(
    readonly code: ReadErrorCode,
    readonly message: string,
    readonly retry: boolean,
  ) {}
}

const failureOf = (error: unknown): AttemptFailure => {
  if (error instanceof AttemptFailure) return error;
  const code = (error as { code?: unknown })?.code;
  const known = (ERROR_CODES as readonly unknown[]).includes(code) ? (code as ReadErrorCode) : 'malformed';
  return new AttemptFailure(known, error instanceof Error ? error.message : String(error), true);
};

export class OrderExecutor {
  private readonly handlers: OrderHandlers;
  private readonly onReading?: ExecutorOptions['onReading'];
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly now: () => number;
  private readonly forceAttempts: number;
  private readonly retry: BackoffOptions;
  private readonly attemptTimeoutMs: number;
  private readonly abortGraceMs: number;
  private readonly onFault?: (error: Error) => void;
  private readonly log: ExecutorLogger;

  constructor(options: ExecutorOptions) {
    this.handlers = options.handlers;
    this.onReading = options.onReading;
    this.sleep = options.sleep ?? sleep;
    this.now = options.now ?? Date.now;
    this.forceAttempts = options.forceAttempts ?? DEFAULT_FORCE_ATTEMPTS;
    const retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    // No jitter: retries of one order on one device do not need spreading.
    this.retry = { baseMs: retryDelayMs, maxMs: Math.max(retryDelayMs, 60_000), jitter: 0 };
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    this.abortGraceMs = options.abortGraceMs ?? Math.min(5_000, this.attemptTimeoutMs);
    this.onFault = options.onFault;
    this.log = options.log ?? NO_LOG;
  }

  /** Runs what parseSections() returned (or bare sections). Never rejects. `signal` cancels it. */
  async execute(parsed: ParsedSections | Section[], options: { signal?: AbortSignal } = {}): Promise<ExecutionResult> {
    const { sections, skipped } = Array.isArray(parsed) ? { sections: parsed, skipped: [] } : parsed;
    for (const s of skipped) this.log.warn({ at: s.at, reason: s.reason, order: s.order }, 'order skipped');
    const outcomes: OrderOutcome[] = [];
    for (let section = 0; section < sections.length; section++) {
      const results = await Promise.all(sections[section].orders.map((order, index) => this.run(order, section, index, options.signal)));
      outcomes.push(...results);
    }
    return { ok: outcomes.every((o) => o.status !== 'failed'), outcomes, skipped };
  }

  private async run(order: Order, section: number, index: number, signal?: AbortSignal): Promise<OrderOutcome> {
    const outcome: OrderOutcome = { section, index, order, status: 'done', attempts: 0 };
    try {
      if (signal?.aborted) throw new AttemptFailure('timeout', 'order cancelled', false);
      await this.runOrder(order, outcome, signal);
    } catch (error) {
      // onReading (the reading could not be stored), or a cancelled wait.
      outcome.status = 'failed';
      outcome.error = error instanceof Error || error instanceof AttemptFailure ? error.message : String(error);
    }
    if (outcome.status === 'failed') this.log.warn({ order, attempts: outcome.attempts, code: outcome.code, error: outcome.error }, 'order failed');
    return outcome;
  }

  private async runOrder(order: Order, outcome: OrderOutcome, signal: AbortSignal | undefined): Promise<void> {
    const attempt = <T>(advise: Advise | undefined, isStale: (() => boolean) | undefined, action: (context: HandlerContext) => MaybePromise<T>) =>
      this.attempt(advise, outcome, isStale, action, signal);
    switch (order.type) {
      case 'read': {
        const value = await attempt(order.advise, undefined, async (context) => {
          const v = await this.handlers.onRead(order.path, context);
          const problem = valueProblem(order.path, v);
          if (problem) throw new AttemptFailure(problem, `read of ${order.path} returned ${typeof v} ${String(v)}`, false);
          return v;
        });
        outcome.value = value === undefined ? [false, this.now(), outcome.code!] : [this.now(), value];
        await this.onReading?.(order.path, outcome.value);
        return;
      }
      case 'write': {
        const problem = valueProblem(order.path, order.value);
        if (problem) return fail(outcome, new AttemptFailure(problem, `${order.path} cannot take ${typeof order.value} ${String(order.value)}`, false));
        const stale = () => order.stale_after !== undefined && order.stale_after !== null && this.now() / 1000 > order.stale_after;
        await attempt(order.advise, stale, (context) => this.handlers.onWrite(order.path, order.value, context));
        return;
      }
      case 'wait':
        outcome.attempts = 1;
        await this.sleep(order.time * 1000, signal);
        return;
      case 'message': {
        const onMessage = this.handlers.onMessage;
        if (!onMessage) return fail(outcome, new AttemptFailure('invalid', 'no message handler registered', false));
        await attempt(undefined, undefined, (context) => onMessage(order.uuid, context));
        return;
      }
      case 'sysctl': {
        const onSysctl = this.handlers.onSysctl;
        if (!onSysctl) return fail(outcome, new AttemptFailure('invalid', 'no sysctl handler registered', false));
        await attempt(undefined, undefined, (context) => onSysctl(order.op_type, order.op_args, context));
        return;
      }
    }
  }

  /**
   * Calls `action` as often as `advise` allows, one attempt at a time. Returns its result, or
   * undefined when it failed (outcome says how) or was dropped as stale.
   */
  private async attempt<T>(
    advise: Advise | undefined,
    outcome: OrderOutcome,
    isStale: (() => boolean) | undefined,
    action: (context: HandlerContext) => MaybePromise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T | undefined> {
    const attempts = advise === Advise.FORCE ? this.forceAttempts : 1;
    for (;;) {
      if (isStale?.()) {
        outcome.status = 'dropped';
        this.log.debug({ order: outcome.order }, 'stale write dropped');
        return undefined;
      }
      outcome.attempts++;
      const result = await this.once(action, outcome.order, signal);
      if (result.ok) {
        outcome.status = 'done';
        return result.value;
      }
      fail(outcome, result.failure);
      if (!result.failure.retry || outcome.attempts >= attempts || signal?.aborted) return undefined;
      try {
        await this.sleep(backoffDelay(outcome.attempts, this.retry, () => 0.5), signal);
      } catch {
        return undefined; // cancelled while waiting
      }
    }
  }

  /**
   * One attempt. On timeout (or cancellation) the handler's signal is aborted and the attempt
   * waits for the handler to return, up to abortGraceMs: only then may another attempt start.
   */
  private async once<T>(action: (context: HandlerContext) => MaybePromise<T>, order: Order, signal: AbortSignal | undefined): Promise<{ ok: true; value: T } | { ok: false; failure: AttemptFailure }> {
    const controller = new AbortController();
    const running = Promise.resolve().then(() => action({ signal: controller.signal }));
    const answer = running.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => {
        if (!(error instanceof PathpointError) && !(error instanceof AttemptFailure) && !controller.signal.aborted) {
          this.fault(`${describe(order)} handler threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
        }
        return { ok: false as const, failure: failureOf(error) };
      },
    );
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const cut = new Promise<'timeout' | 'cancelled'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.attemptTimeoutMs);
      onAbort = () => resolve('cancelled');
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const first = await Promise.race([answer, cut]);
      if (first !== 'timeout' && first !== 'cancelled') return first;
      controller.abort(new Error(first === 'timeout' ? `no answer within ${this.attemptTimeoutMs} ms` : 'order cancelled'));
      let grace: NodeJS.Timeout | undefined;
      const stopped = await Promise.race([answer.then(() => true), new Promise<boolean>((r) => (grace = setTimeout(() => r(false), this.abortGraceMs)))]);
      clearTimeout(grace);
      const what = first === 'timeout' ? `no answer within ${this.attemptTimeoutMs} ms` : 'order cancelled';
      if (stopped) return { ok: false, failure: new AttemptFailure('timeout', what, first === 'timeout') };
      this.fault(`${describe(order)} handler did not return within ${this.abortGraceMs} ms of being aborted; abandoned, not retried`);
      return { ok: false, failure: new AttemptFailure('timeout', `${what}; the handler did not stop, so it is not retried`, false) };
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  private fault(message: string): void {
    try {
      this.onFault?.(new Error(message));
    } catch {
      // A reporting hook must not break an order.
    }
  }
}

const describe = (order: Order) => ('path' in order ? `${order.type} ${order.path}:` : `${order.type}:`);

function fail(outcome: OrderOutcome, failure: AttemptFailure): void {
  outcome.status = 'failed';
  outcome.code = failure.code;
  outcome.error = failure.message;
}
