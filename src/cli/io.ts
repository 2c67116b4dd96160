/** Where a command writes: stdout and stderr, or a test's buffers. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** What `hyper exec -i` feeds the command: this process's stdin. */
  input?: AsyncIterable<Buffer>;
}

/** Progress on stderr, warnings marked. */
export function reporter(io: Io): { info(line: string): void; warn(line: string): void } {
  return { info: (line) => io.err(`${line}\n`), warn: (line) => io.err(`warning: ${line}\n`) };
}
