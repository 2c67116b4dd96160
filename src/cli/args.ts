import { HyperError, type ErrorKind } from '../errors.js';
/** A small getopt for `hyper`: options come before the positionals, as in `docker run`. Pure. */
export interface OptionDef {
  /** Long name without dashes; also the key in the result. */
  name: string;
  short?: string;
  /** Takes a value (`--name N`, `--name=N`); else a boolean flag. */
  value?: boolean;
  /** May be given more than once; values collect in order. */
  multiple?: boolean;
}

export interface ParsedArgs {
  options: Record<string, string | boolean | string[]>;
  positionals: string[];
}

export class UsageError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'UsageError';
}

/**
 * Parses `argv` against `defs`. Parsing stops at the first positional once
 * `stopAtPositional` counts of them are seen (the image in `hyper run IMAGE ARG...`),
 * or at `--`; everything after is kept verbatim.
 */
export function parseArgs(
  argv: readonly string[],
  defs: readonly OptionDef[],
  stopAfterPositionals = Infinity,
): ParsedArgs {
  const options: ParsedArgs['options'] = {};
  const positionals: string[] = [];
  for (const def of defs) if (def.multiple) options[def.name] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg.startsWith('-') && arg !== '-') {
      const long = arg.startsWith('--');
      const [key, inline] = long
        ? splitOnce(arg.slice(2), '=')
        : [arg.slice(1, 2), arg.length > 2 ? arg.slice(2) : undefined];
      const def = defs.find((d) => (long ? d.name === key : d.short === key));
      if (!def) throw new UsageError(`unknown option ${long ? `--${key}` : `-${key}`}`);
      let value: string | boolean = true;
      if (def.value) {
        if (inline !== undefined) value = inline;
        else if (i + 1 < argv.length) value = argv[++i] as string;
        else throw new UsageError(`option --${def.name} needs a value`);
      } else if (inline !== undefined) {
        throw new UsageError(`option --${def.name} takes no value`);
      }
      if (def.multiple) (options[def.name] as string[]).push(String(value));
      else options[def.name] = value;
      continue;
    }
    positionals.push(arg);
    if (positionals.length >= stopAfterPositionals) {
      i++;
      break;
    }
  }
  positionals.push(...argv.slice(i));
  return { options, positionals };
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}

export function stringOption(parsed: ParsedArgs, name: string): string | undefined {
  const value = parsed.options[name];
  return typeof value === 'string' ? value : undefined;
}

export function listOption(parsed: ParsedArgs, name: string): string[] {
  const value = parsed.options[name];
  return Array.isArray(value) ? value : [];
}

export function intOption(parsed: ParsedArgs, name: string, fallback: number, min: number): number {
  const text = stringOption(parsed, name);
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < min)
    throw new UsageError(`--${name}: "${text}" is not a whole number of at least ${min}`);
  return Number(text);
}
