/**
 * One error base class for everything flowgate throws on purpose. `code` is stable and
 * documented (README "Errors"); `errno` is set when the error came from a system call.
 */
export class FlowgateError extends Error {
  readonly code: string;
  readonly errno?: number;
  constructor(code: string, message: string, options?: { cause?: unknown; errno?: number }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'FlowgateError';
    this.code = code;
    if (options?.errno !== undefined) this.errno = options.errno;
  }
}

/** A configuration problem, with the place it was found (1-based line and column). */
export class ConfigError extends FlowgateError {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  constructor(file: string, line: number, col: number, message: string) {
    super('ERR_CONFIG', `${file}:${line}:${col}: ${message}`);
    this.name = 'ConfigError';
    this.file = file;
    this.line = line;
    this.col = col;
  }
}

/** Bad command-line usage: exit code 2. */
export class UsageError extends FlowgateError {
  constructor(message: string) {
    super('ERR_USAGE', message);
    this.name = 'UsageError';
  }
}
