/**
 * The error-code registry: every error Petri reports to a client has one of
 * these codes, with a fixed HTTP status and a one-line meaning.
 * `docs/errors.md` lists the same set; `test/errors.test.ts` keeps them in step.
 */
export const ERROR_CODES = {
  InvalidSpec: { status: 400, meaning: 'The function spec or its code is invalid.' },
  InvalidRequest: { status: 400, meaning: 'The request is malformed (bad JSON, bad parameter).' },
  SourceNotAllowed: {
    status: 403,
    meaning: "source.path is outside the folders the node's config allows deploys from.",
  },
  FunctionNotFound: { status: 404, meaning: 'No function with that name is deployed.' },
  InvocationNotFound: { status: 404, meaning: 'No invocation with that id is known.' },
  VersionNotFound: {
    status: 404,
    meaning: 'The function has no such version (never made, or pruned).',
  },
  AliasNotFound: { status: 404, meaning: 'The function has no alias of that name.' },
  GroupNotFound: { status: 404, meaning: 'No function group with that name is running.' },
  GroupExists: { status: 409, meaning: 'A function group with that name is already running.' },
  NotGroupMember: {
    status: 403,
    meaning: 'The coordination service was called from an address that is no group member.',
  },
  NotInvocable: {
    status: 400,
    meaning:
      'The function is a service (runtime "service"): it runs in groups, not per invocation.',
  },
  Unauthorized: {
    status: 401,
    meaning: 'The request has no valid API token.',
  },
  RouteNotFound: { status: 404, meaning: 'No API route matches the method and path.' },
  MethodNotAllowed: {
    status: 405,
    meaning:
      'The route exists but not for this method; the Allow header lists the methods it takes.',
  },
  PayloadTooLarge: { status: 413, meaning: 'The request body is over the payload limit.' },
  QueueFull: { status: 429, meaning: "The function's queue is full; try again later." },
  QueueTimeout: {
    status: 503,
    meaning: 'The invocation waited in the queue longer than the maximum wait.',
  },
  CapacityExceeded: {
    status: 503,
    meaning: 'The node cannot make room for an instance of this function.',
  },
  HandlerError: { status: 502, meaning: "The function's handler threw or reported an error." },
  Timeout: {
    status: 504,
    meaning: 'The invocation ran past the function timeout; the instance was killed.',
  },
  OutOfMemory: { status: 502, meaning: 'The instance was killed for exceeding its memory limit.' },
  InstanceCrashed: {
    status: 502,
    meaning: 'The instance exited or crashed during the invocation.',
  },
  BadResponse: {
    status: 502,
    meaning:
      'The function returned something that is not valid JSON, or an invalid function URL response.',
  },
  ResponseTooLarge: {
    status: 502,
    meaning: "The function's result is over the node's response limit.",
  },
  BadFrame: {
    status: 502,
    meaning: 'The instance broke the runtime protocol (a bad frame); it was killed.',
  },
  NodeRestarted: {
    status: 503,
    meaning: 'The node restarted while the invocation was queued or running.',
  },
  InvalidConfig: {
    status: 500,
    meaning: 'The node configuration is invalid; the node does not start.',
  },
  Internal: { status: 500, meaning: 'An unexpected error inside Petri.' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** The JSON body every API error has. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

/**
 * An error with a registered code. Throw it anywhere; the API turns it into
 * `{"error": {...}}` with the registry's status.
 *
 * @example throw new PetriError('FunctionNotFound', `no function named ${name}`)
 */
export class PetriError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'PetriError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  toBody(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

/** Wraps anything thrown into a PetriError, keeping registered codes. */
export function toPetriError(err: unknown): PetriError {
  if (err instanceof PetriError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PetriError('Internal', message);
}
