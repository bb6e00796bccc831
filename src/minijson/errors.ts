/** Base class of every error the codec throws, so callers can catch the codec's failures alone. */
export class MiniJSONError extends Error {
  override name = 'MiniJSONError';
}

/** The value cannot be represented: a cycle, a function, a symbol, `undefined` in a list... */
export class EncodingError extends MiniJSONError {
  override name = 'EncodingError';
  /** Where in the value the problem is, e.g. `$.values[3]`. */
  readonly path: string;
  /** What is wrong, without the path. */
  readonly reason: string;
  constructor(reason: string, path = '$') {
    super(`${reason} at ${path}`);
    this.reason = reason;
    this.path = path;
  }

  /** The same error seen from the container one level up (`segment` is e.g. `[3]` or `.name`). */
  under(segment: string): EncodingError {
    return new EncodingError(this.reason, '$' + segment + this.path.slice(1));
  }
}

/** The bytes are not valid MiniJSON. `offset` is where the decoder was when it gave up. */
export class DecodingError extends MiniJSONError {
  override name = 'DecodingError';
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.offset = offset;
  }
}
