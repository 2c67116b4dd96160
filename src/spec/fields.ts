import { parseImageReference } from '../images/reference.js';
import { parsePortSpec, type PortSpec } from '../network/ports.js';
import type { VariableMap } from './interpolate.js';
import {
  healthcheck,
  PARTIAL_HEALTHCHECK,
  type DependencyCondition,
  type HealthcheckSpec,
  type ContainerSpec,
} from './container.js';
import { splitShellWords } from './shell-words.js';
import { parseCount, parseCpus, parseDurationMs, parseMemoryMiB } from './units.js';
import type { YamlValue } from './yaml-value.js';

/** The readers of per-service keys that the services input and compose files share. */

/** Drops the keys whose value is undefined, so an absent setting is absent, not `key: undefined`. */
export function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** The service id is also the VM's name and hostname. */
export function readServiceName(name: string, at: YamlValue): string {
  if (!SERVICE_NAME.test(name)) {
    throw at.error(
      `"${name}" is not a valid service name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)`,
    );
  }
  return name;
}

/** A registry reference as `docker pull` takes it, or a local OCI layout (`oci:DIR[:TAG]`). */
export function readImage(value: YamlValue): string {
  const image = value.string('an image reference such as postgres:16');
  if (!image.startsWith('oci:')) value.attempt(() => parseImageReference(image));
  return image;
}

export function readPorts(value: YamlValue, readLong?: (item: YamlValue) => string): PortSpec[] {
  return value.items().map((item) => {
    const text =
      readLong && item.kind === 'a map' ? readLong(item) : item.text('a port mapping such as "8080:80"');
    return item.attempt(() => parsePortSpec(text));
  });
}

/** `KEY: value` entries; a null value is taken from `variables` (Compose) or refused (no `variables`). */
export function readEnvMap(value: YamlValue, variables?: VariableMap): string[] {
  const env: string[] = [];
  for (const { key, value: entry } of value.entries()) {
    checkEnvName(key, entry);
    if (entry.isNull && variables) {
      const host = variables[key];
      if (host !== undefined) env.push(`${key}=${host}`);
    } else {
      env.push(`${key}=${entry.text('a string, number or boolean')}`);
    }
  }
  return env;
}

export function checkEnvName(name: string, at: YamlValue): void {
  if (name === '' || name.includes('=')) throw at.error(`"${name}" is not a variable name`);
}

/** A command as a list, or a string split as a shell would. */
export function readWords(value: YamlValue): string[] {
  if (value.kind === 'a list') return value.items().map((item) => item.text());
  const text = value.string('a string or a list of strings');
  return value.attempt(() => splitShellWords(text));
}

export function readStringList(value: YamlValue): string[] {
  return value.items().map((item) => item.string());
}

export function readMemory(value: YamlValue): number {
  const text = value.text('an amount of memory such as 512m');
  return value.attempt(() => parseMemoryMiB(text));
}

export function readCpus(value: YamlValue): number {
  const text = value.text('a number of CPUs');
  return value.attempt(() => parseCpus(text));
}

export function readDuration(value: YamlValue): number {
  const text = value.text('a duration such as 10s');
  return value.attempt(() => parseDurationMs(text));
}

const HEALTHCHECK_KEYS = [
  'test',
  'interval',
  'timeout',
  'start_period',
  'start_interval',
  'retries',
  'disable',
];

/** Compose's healthcheck map. undefined: keep the image's. */
export function readHealthcheck(value: YamlValue): HealthcheckSpec | 'none' | undefined {
  const fields = value.fields(HEALTHCHECK_KEYS);
  const disable = fields.get('disable');
  const testValue = fields.get('test');
  const test = testValue ? readHealthTest(testValue) : undefined;
  if (disable?.boolean()) {
    if (test !== undefined && test !== 'none') throw disable.error('disable: true cannot go with a test');
    return 'none';
  }
  if (test === 'none') return 'none';
  if (test === undefined) {
    if ([...fields.keys()].some((key) => key !== 'disable')) throw value.error(PARTIAL_HEALTHCHECK);
    return undefined;
  }
  const duration = (key: string): number | undefined => {
    const field = fields.get(key);
    return field && readDuration(field);
  };
  const retries = fields.get('retries');
  return healthcheck(test, {
    intervalMs: duration('interval'),
    timeoutMs: duration('timeout'),
    startPeriodMs: duration('start_period'),
    startIntervalMs: duration('start_interval'),
    retries: retries && retries.attempt(() => parseCount(retries.text(), 0)),
  });
}

/** `test:` as a string (CMD-SHELL) or a list led by CMD, CMD-SHELL or NONE. */
function readHealthTest(value: YamlValue): string[] | 'none' {
  if (value.kind !== 'a list') {
    const command = value.string('a string or a list led by CMD, CMD-SHELL or NONE');
    if (command.trim() === '') throw value.error('the test is empty');
    return ['CMD-SHELL', command];
  }
  const [kind, ...args] = value.items().map((item) => item.text());
  if (kind === 'NONE') return 'none';
  if (kind !== 'CMD' && kind !== 'CMD-SHELL') {
    throw value.error(
      `a test list starts with "CMD", "CMD-SHELL" or "NONE", not ${JSON.stringify(kind ?? '')}; a plain string runs through the shell`,
    );
  }
  if (args.length === 0) throw value.error(`${kind} needs a command after it`);
  // Docker joins a CMD-SHELL's words into one shell command.
  return kind === 'CMD' ? [kind, ...args] : [kind, args.join(' ')];
}

const CONDITIONS: readonly string[] = ['service_started', 'service_healthy'];

/** A list of service ids, or a map of id -> { condition }. */
export function readDependsOn(value: YamlValue): ContainerSpec['dependsOn'] {
  if (value.kind === 'a list') {
    return value.items().map((item) => ({
      service: item.string('a service id'),
      condition: 'service_started' as const,
    }));
  }
  if (value.kind !== 'a map') throw value.expected('a list of service ids or a map of id: { condition }');
  return value.entries().map(({ key, value: entry }) => {
    if (entry.isNull) return { service: key, condition: 'service_started' as const };
    const condition = entry.fields(['condition']).get('condition');
    return { service: key, condition: condition ? readCondition(condition) : 'service_started' };
  });
}

export function readCondition(value: YamlValue): DependencyCondition {
  const condition = value.string();
  if (condition === 'service_completed_successfully') {
    throw value.error(
      'service_completed_successfully is not supported: services run for the whole job; use service_started or service_healthy',
    );
  }
  if (!CONDITIONS.includes(condition)) {
    throw value.error(`"${condition}" is not a condition; use service_started or service_healthy`);
  }
  return condition as DependencyCondition;
}
