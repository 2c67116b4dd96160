import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

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

export class CommandError extends Error {
  constructor(
    readonly command: Command,
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    const how = exitCode === undefined ? 'could not be started' : `exited with code ${exitCode}`;
    const detail = trimOutput(stderr);
    super(`${formatCommand(command)} ${how}${detail ? `: ${detail}` : ''}`);
    this.name = 'CommandError';
  }
}

type Logger = (line: string) => void;
let debugLog: Logger = () => {};

/** Where command lines are logged (core.debug in the action, stderr with HYPER_DEBUG in the CLI). */
export function setCommandLogger(logger: Logger): void {
  debugLog = logger;
}

export function formatCommand(command: Command): string {
  return [command.program, ...command.args].map(quoteArg).join(' ');
}

function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Keeps the last lines of a tool's stderr: enough to say why it failed, short enough for a log line. */
export function trimOutput(text: string, maxLines = 12): string {
  const lines = text.trim().split('\n');
  const kept = lines.slice(-maxLines).join('\n');
  return lines.length > maxLines ? `...\n${kept}` : kept;
}

/** Runs a command to completion; throws CommandError on a non-zero exit unless `allowFailure`. */
export async function run(
  command: Command,
  options: { allowFailure?: boolean } = {},
): Promise<CommandResult> {
  debugLog(`$ ${formatCommand(command)}`);
  const result = await execa(command.program, [...command.args], {
    reject: false,
    input: command.input,
    env: command.env,
    cwd: command.cwd,
    stripFinalNewline: false,
    encoding: 'utf8',
  });
  if (result.exitCode === undefined && result.failed) {
    throw new CommandError(command, undefined, result.originalMessage ?? result.message ?? '');
  }
  const exitCode = result.exitCode ?? 1;
  if (exitCode !== 0 && !options.allowFailure) {
    throw new CommandError(command, exitCode, String(result.stderr || result.stdout));
  }
  return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode };
}

/** True when `program` is an executable on PATH (or, with a '/', at that path). Looked up in-process: no shell per tool. */
export async function onPath(program: string): Promise<boolean> {
  const candidates = program.includes('/')
    ? [program]
    : (process.env.PATH ?? '')
        .split(':')
        .filter(Boolean)
        .map((dir) => path.join(dir, program));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return true;
    } catch {
      // Not here; try the next directory.
    }
  }
  return false;
}
