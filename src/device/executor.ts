/**
 * Runs orders (spec §6): sections one after another, the orders of a section in parallel,
 * through the pathpoint handlers the device software registers. It knows nothing of NGTT or
 * HTTPS: the runtime decides what to confirm, reject or upload from the result.
 *
 * Retries: an order with advise ADVISE (or none) gets one attempt; FORCE gets up to
 * `forceAttempts` (default 5), waiting `retryDelayMs` (default 250 ms) before the second and
 * doubling each time. Only handler failures are retried; a value of the wrong type is not.
 * A write whose `stale_after` has passed is dropped, checked again before every attempt.
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
  /** Aborted when the attempt times out: stop working on it. */
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
  /** Default: setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** Unix ms. Default Date.now. */
  now?: () => number;
  forceAttempts?: number;
  retryDelayMs?: number;
  /** Per attempt; the handler's signal is aborted and the attempt fails with `timeout`. Default 30 s. */
  attemptTimeoutMs?: number;
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

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
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
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private readonly forceAttempts: number;
  private readonly retryDelayMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly log: ExecutorLogger;

  constructor(options: ExecutorOptions) {
    this.handlers = options.handlers;
    this.onReading = options.onReading;
    this.sleep = options.sleep ?? realSleep;
    this.now = options.now ?? Date.now;
    this.forceAttempts = options.forceAttempts ?? DEFAULT_FORCE_ATTEMPTS;
    this.retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    this.log = options.log ?? NO_LOG;
  }

  /** Runs what parseSections() returned (or bare sections). Never rejects. */
  async execute(parsed: ParsedSections | Section[]): Promise<ExecutionResult> {
    const { sections, skipped } = Array.isArray(parsed) ? { sections: parsed, skipped: [] } : parsed;
    for (const s of skipped) this.log.warn({ at: s.at, reason: s.reason, order: s.order }, 'order skipped');
    const outcomes: OrderOutcome[] = [];
    for (let section = 0; section < sections.length; section++) {
      const results = await Promise.all(sections[section].orders.map((order, index) => this.run(order, section, index)));
      outcomes.push(...results);
    }
    return { ok: outcomes.every((o) => o.status !== 'failed'), outcomes, skipped };
  }

  private async run(order: Order, section: number, index: number): Promise<OrderOutcome> {
    const outcome: OrderOutcome = { section, index, order, status: 'done', attempts: 0 };
    try {
      await this.runOrder(order, outcome);
    } catch (error) {
      // Only onReading can get here: the reading could not be stored.
      outcome.status = 'failed';
      outcome.error = error instanceof Error ? error.message : String(error);
    }
    if (outcome.status === 'failed') this.log.warn({ order, attempts: outcome.attempts, code: outcome.code, error: outcome.error }, 'order failed');
    return outcome;
  }

  private async runOrder(order: Order, outcome: OrderOutcome): Promise<void> {
    switch (order.type) {
      case 'read': {
        const value = await this.attempt(order.advise, outcome, undefined, async (context) => {
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
        await this.attempt(order.advise, outcome, stale, (context) => this.handlers.onWrite(order.path, order.value, context));
        return;
      }
      case 'wait':
        outcome.attempts = 1;
        await this.sleep(order.time * 1000);
        return;
      case 'message': {
        const onMessage = this.handlers.onMessage;
        if (!onMessage) return fail(outcome, new AttemptFailure('invalid', 'no message handler registered', false));
        await this.attempt(undefined, outcome, undefined, (context) => onMessage(order.uuid, context));
        return;
      }
      case 'sysctl': {
        const onSysctl = this.handlers.onSysctl;
        if (!onSysctl) return fail(outcome, new AttemptFailure('invalid', 'no sysctl handler registered', false));
        await this.attempt(undefined, outcome, undefined, (context) => onSysctl(order.op_type, order.op_args, context));
        return;
      }
    }
  }

  /**
   * Calls `action` as often as `advise` allows. Returns its result, or undefined when it
   * failed (outcome says how) or was dropped as stale.
   */
  private async attempt<T>(
    advise: Advise | undefined,
    outcome: OrderOutcome,
    isStale: (() => boolean) | undefined,
    action: (context: HandlerContext) => MaybePromise<T>,
  ): Promise<T | undefined> {
    const attempts = advise === Advise.FORCE ? this.forceAttempts : 1;
    let delay = this.retryDelayMs;
    for (;;) {
      if (isStale?.()) {
        outcome.status = 'dropped';
        this.log.debug({ order: outcome.order }, 'stale write dropped');
        return undefined;
      }
      outcome.attempts++;
      try {
        const result = await this.withTimeout(action);
        outcome.status = 'done';
        return result;
      } catch (error) {
        const failure = failureOf(error);
        fail(outcome, failure);
        if (!failure.retry || outcome.attempts >= attempts) return undefined;
      }
      await this.sleep(delay);
      delay *= 2;
    }
  }

  private async withTimeout<T>(action: (context: HandlerContext) => MaybePromise<T>): Promise<T> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new AttemptFailure('timeout', `no answer within ${this.attemptTimeoutMs} ms`, true));
      }, this.attemptTimeoutMs);
    });
    try {
      return await Promise.race([Promise.resolve().then(() => action({ signal: controller.signal })), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function fail(outcome: OrderOutcome, failure: AttemptFailure): void {
  outcome.status = 'failed';
  outcome.code = failure.code;
  outcome.error = failure.message;
}
