import { SpecError } from './container.js';

/** The variables a compose file's `${VAR}` are taken from (the caller's environment, passed in). */
export type VariableMap = Readonly<Record<string, string | undefined>>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/**
 * Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
 * `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, and `$$` for a literal `$`.
 * Defaults may nest (`${A:-${B}}`). An unset `${VAR}` is empty, as in Compose. Pure.
 */
export function interpolate(text: string, variables: VariableMap): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar < 0) break;
    out += text.slice(i, dollar);
    const next = text[dollar + 1];
    if (next === '$') {
      out += '$';
      i = dollar + 2;
    } else if (next === '{') {
      const close = matchingBrace(text, dollar + 2);
      out += substitute(text.slice(dollar + 2, close), variables, text);
      i = close + 1;
    } else {
      const name = NAME.exec(text.slice(dollar + 1))?.[0];
      out += name === undefined ? '$' : (variables[name] ?? '');
      i = dollar + 1 + (name?.length ?? 0);
    }
  }
  return out + text.slice(i);
}

function matchingBrace(text: string, from: number): number {
  let depth = 1;
  for (let i = from; i < text.length; i++) {
    if (text[i] === '{' && text[i - 1] === '$') depth++;
    else if (text[i] === '}' && --depth === 0) return i;
  }
  throw new SpecError(`unterminated "\${" in ${JSON.stringify(text)}; write $$ for a literal $`);
}

function substitute(expression: string, variables: VariableMap, text: string): string {
  const name = NAME.exec(expression)?.[0];
  const rest = expression.slice(name?.length ?? 0);
  const operator = /^(:?[-?+])?/.exec(rest)?.[0] ?? '';
  if (name === undefined || (operator === '' && rest !== '')) {
    throw new SpecError(
      `"\${${expression}}" in ${JSON.stringify(text)} is not a variable; use \${NAME} or \${NAME:-default}`,
    );
  }
  const argument = rest.slice(operator.length);
  const value = variables[name];
  // With a colon, an empty value counts as unset.
  const missing = operator.startsWith(':') ? !value : value === undefined;
  switch (operator.replace(':', '')) {
    case '-':
      return missing ? interpolate(argument, variables) : (value ?? '');
    case '?':
      if (missing)
        throw new SpecError(
          `variable ${name} is required: ${interpolate(argument, variables) || 'it is not set'}`,
        );
      return value ?? '';
    case '+':
      return missing ? '' : interpolate(argument, variables);
    default:
      return value ?? '';
  }
}
