import type { VariableMap } from './interpolate.js';
import { SpecError } from './container.js';

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * An env_file's `KEY=VALUE` lines -> "KEY=VALUE" entries. Blank lines and `#`
 * comments are skipped, an `export ` prefix is allowed, and one pair of
 * surrounding quotes is stripped (double quotes also take \n, \" and \\).
 * A bare `KEY` takes its value from `variables`, as Compose does, or is left
 * out when unset. `name` is how errors name the file. Pure.
 */
export function parseEnvFile(text: string, name: string, variables: VariableMap): string[] {
  const entries: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim().replace(/^export\s+/, '');
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (!KEY.test(key)) {
      throw new SpecError(`${name} line ${index + 1}: ${JSON.stringify(raw)} is not KEY=VALUE`);
    }
    if (eq < 0) {
      const value = variables[key];
      if (value !== undefined) entries.push(`${key}=${value}`);
      return;
    }
    entries.push(`${key}=${unquote(line.slice(eq + 1).trim())}`);
  });
  return entries;
}

function unquote(value: string): string {
  const single = /^'([^']*)'\s*(?:#.*)?$/.exec(value);
  if (single) return single[1] ?? '';
  const double = /^"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$/.exec(value);
  if (double) return (double[1] ?? '').replace(/\\([n"\\])/g, (_match, c: string) => (c === 'n' ? '\n' : c));
  // Unquoted, a # after whitespace starts a comment.
  return value.replace(/\s+#.*$/, '');
}
