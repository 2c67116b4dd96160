import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { COMPOSE_SPEC_SCHEMA } from './compose-schema.js';
import { SpecError } from './container.js';
import type { YamlValue } from './yaml-value.js';

let compiled: ValidateFunction | undefined;

/** The schema's validator, compiled on first use (a few hundred milliseconds). */
function validator(): ValidateFunction {
  compiled ??= new Ajv2020({
    // The schema is not written for Ajv's strict type checks; unknown keywords still fail.
    strictTypes: false,
    strictTuples: false,
    allErrors: true,
    verbose: true,
  }).compile(COMPOSE_SPEC_SCHEMA);
  return compiled;
}

/**
 * Checks a compose file against the Compose Specification's own JSON schema,
 * after interpolation as `docker compose` does. The first problem becomes a
 * message that names the key path and line: an unknown key with the nearest
 * valid one when there is an obvious one. Pure.
 */
export function checkComposeSchema(root: YamlValue): void {
  const at = new Map<string, YamlValue>();
  const document = plain(root, '', at);
  const validate = validator();
  if (validate(document)) return;
  const problem = firstProblem(validate.errors ?? []);
  if (!problem) throw root.error('the file does not follow the Compose Specification');
  const value = at.get(problem.instancePath) ?? root;
  throw describe(problem, value, validate.errors ?? []);
}

/** The value as plain data, strings interpolated; `at` maps each JSON pointer to its YAML value. */
function plain(value: YamlValue, pointer: string, at: Map<string, YamlValue>): unknown {
  at.set(pointer, value);
  switch (value.kind) {
    case 'a map':
      return Object.fromEntries(
        value.entries().map(({ key, value: entry }) => [key, plain(entry, `${pointer}/${escape(key)}`, at)]),
      );
    case 'a list':
      return value.items().map((item, index) => plain(item, `${pointer}/${index}`, at));
    case 'a string':
      return value.string();
    case 'a number':
      return Number(value.text());
    case 'a boolean':
      return value.boolean();
    case 'null':
      return null;
  }
}

function escape(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * The error a user should see first: an unknown key before anything else
 * (under oneOf every branch reports, and a misspelt key is what went wrong),
 * then the deepest, which is the most specific.
 */
function firstProblem(errors: readonly ErrorObject[]): ErrorObject | undefined {
  const depth = (error: ErrorObject): number => error.instancePath.split('/').length;
  const ranked = errors
    .filter((error) => error.keyword !== 'oneOf' && error.keyword !== 'anyOf' && error.keyword !== 'if')
    .sort((a, b) => {
      const unknown =
        Number(b.keyword === 'additionalProperties') - Number(a.keyword === 'additionalProperties');
      return unknown !== 0 ? unknown : depth(b) - depth(a);
    });
  return ranked[0] ?? errors[0];
}

function describe(error: ErrorObject, value: YamlValue, errors: readonly ErrorObject[]): SpecError {
  if (error.keyword === 'additionalProperties') {
    const key = (error.params as { additionalProperty: string }).additionalProperty;
    const entry = value.kind === 'a map' ? value.entries().find((e) => e.key === key)?.value : undefined;
    const valid = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
    const near = nearest(key, valid);
    const hint = near
      ? `; did you mean ${near}?`
      : valid.length > 0 && valid.length <= 12
        ? `; valid keys: ${valid.join(', ')}`
        : '';
    if (entry) return new SpecError(`${entry.source}: ${entry.where} is not a known key${hint}`);
    return value.error(`${key} is not a known key${hint}`);
  }
  if (error.keyword === 'type') {
    // Each branch of a oneOf reports the type it wanted: together they are what the value may be.
    const types = new Set(
      errors
        .filter((other) => other.keyword === 'type' && other.instancePath === error.instancePath)
        .flatMap((other) => [(other.params as { type: string | string[] }).type].flat()),
    );
    const words = TYPE_ORDER.filter((type) => types.has(type)).map((type) => TYPE_WORDS[type] ?? type);
    const last = words.pop() ?? 'something else';
    return value.expected(words.length > 0 ? `${words.join(', ')} or ${last}` : last);
  }
  if (error.keyword === 'enum') {
    const allowed = (error.params as { allowedValues: unknown[] }).allowedValues;
    return value.error(`must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`);
  }
  if (error.keyword === 'required') {
    return value.error(`${(error.params as { missingProperty: string }).missingProperty} is missing`);
  }
  return value.error(error.message ?? 'does not follow the Compose Specification');
}

const TYPE_ORDER = ['object', 'string', 'array', 'number', 'integer', 'boolean', 'null'];
const TYPE_WORDS: Record<string, string> = {
  object: 'a map',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'a boolean',
  null: 'null',
};

/** The valid key `key` is most likely a typo of: within two edits, or a third of its length. */
function nearest(key: string, valid: readonly string[]): string | undefined {
  const limit = Math.max(2, Math.floor(key.length / 3));
  let best: { name: string; distance: number } | undefined;
  for (const name of valid) {
    const distance = editDistance(key, name);
    if (distance <= limit && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = row;
  }
  return previous[b.length] ?? 0;
}
