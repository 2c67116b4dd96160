import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { type ErrorKind, HyperError, type HyperErrorOptions } from '../errors.js';

/** A command line, built by a pure function and handed to `run`. */
export interface Command {
  program: string;
  args: readonly string[];
  /** Bytes to write to the child's stdin. */
  input?: string | Buffer;
  env?: Record<string, string>;
  cwd?: string;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** How a child ended, when it did not simply exit: killed by a signal, past its time limit, or never started. */
export interface CommandEnd {
  exitCode?: number | undefined;
  signal?: string | undefined;
  timedOutMs?: number | undefined;
  /** Why the program could not be run at all (ENOENT, EACCES). */
  startError?: string | undefined;
}

/** "exited with code 1", "was killed by SIGABRT", "did not finish within 6 s", "could not be started (ENOENT)". Pure. */
export function describeEnd(end: CommandEnd): string {
  if (end.timedOutMs !== undefined) return `did not finish within ${formatSeconds(end.timedOutMs)}`;
  if (end.signal) return `was killed by ${end.signal}`;
  if (end.exitCode !== undefined) return `exited with code ${end.exitCode}`;
  return `could not be started${end.startError ? ` (${end.startError})` : ''}`;
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

export class CommandError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  readonly end: CommandEnd;
  constructor(
    readonly command: Command,
    end: CommandEnd | number | undefined,
    readonly stderr: string,
    options: HyperErrorOptions = {},
  ) {
    const how: CommandEnd = typeof end === 'object' ? end : { exitCode: end };
    const detail = trimOutput(stderr);
    // A program that is not there is a host missing a tool, not a failed command.
    const kind = options.kind ?? (how.startError === 'ENOENT' ? 'Unavailable' : undefined);
    super(`${formatCommand(command)} ${describeEnd(how)}${detail ? `: ${detail}` : ''}`, {
      ...options,
      kind,
    });
    this.name = 'CommandError';
    this.end = how;
  }

  get exitCode(): number | undefined {
    return this.end.exitCode;
  }
}

type Logger = (line: string) => void;
let debugLog: Logger = () => {};

/** Where command lines are logged (core.debug in the action, stderr with HYPER_DEBUG in the CLI). */
export function setCommandLogger(logger: Logger): void {
  debugLog = logger;
}

export function formatCommand(command: Command): string {
  return [command.program, ...command.args].map(shellQuote).join(' ');
}

/** `arg` as /bin/sh reads it back: as it is when plain, else in single quotes. Pure. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Keeps the last lines of a tool's stderr: enough to say why it failed, short enough for a log line. */
export function trimOutput(text: string, maxLines = 12): string {
  const lines = text.trim().split('\n');
  const kept = lines.slice(-maxLines).join('\n');
  return lines.length > maxLines ? `...\n${kept}` : kept;
}

/**
 * Runs a command to completion; throws CommandError on a non-zero exit unless
 * `allowFailure`. A child that was killed by a signal, ran past `timeoutMs`
 * (then TERM, and KILL 2 s later) or could not be started always throws, and
 * the error says which, with the tail of its stderr.
 */
export async function run(
  command: Command,
  options: { allowFailure?: boolean; timeoutMs?: number } = {},
): Promise<CommandResult> {
  debugLog(`$ ${formatCommand(command)}`);
  const result = await execa(command.program, [...command.args], {
    reject: false,
    input: command.input,
    env: command.env,
    cwd: command.cwd,
    stripFinalNewline: false,
    encoding: 'utf8',
    ...(options.timeoutMs ? { timeout: options.timeoutMs, forceKillAfterDelay: 2000 } : {}),
  });
  const output = String(result.stderr || result.stdout || '');
  if (result.timedOut) throw new CommandError(command, { timedOutMs: options.timeoutMs }, output);
  if (result.signal) throw new CommandError(command, { signal: result.signal }, output);
  if (result.exitCode === undefined && result.failed) {
    const startError = (result.cause as NodeJS.ErrnoException | undefined)?.code;
    throw new CommandError(command, { startError }, result.originalMessage ?? result.message ?? '', {
      cause: result.cause,
    });
  }
  const exitCode = result.exitCode ?? 1;
  if (exitCode !== 0 && !options.allowFailure) throw new CommandError(command, exitCode, output);
  return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode };
}

/** The path of `program`: looked up on PATH, or as given when it has a '/'; undefined when it is not an executable file. */
export async function programPath(program: string): Promise<string | undefined> {
  for (const candidate of pathCandidates(program, process.env.PATH)) {
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // Not here; try the next directory.
    }
  }
  return undefined;
}

/** True when `program` is an executable on PATH (or, with a '/', at that path). Looked up in-process: no shell per tool. */
export async function onPath(program: string): Promise<boolean> {
  return (await programPath(program)) !== undefined;
}

/**
 * Where exec looks for `program`, in order, as the spawn of a child does: a
 * name with a '/' is taken as it is; else each PATH entry (an empty one is
 * the current directory), or /usr/bin:/bin when PATH is unset. Pure.
 */
export function pathCandidates(program: string, searchPath: string | undefined): string[] {
  if (program.includes('/')) return [program];
  if (program === '') return [];
  return (searchPath ?? DEFAULT_PATH).split(':').map((dir) => path.resolve(dir || '.', program));
}

/** libuv's search path for a child when the environment has no PATH. */
const DEFAULT_PATH = '/usr/bin:/bin';
