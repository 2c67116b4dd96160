import { healthcheck, PARTIAL_HEALTHCHECK, SpecError, type HealthcheckSpec } from './container.js';
import { splitShellWords } from './shell-words.js';
import { parseCount, parseCpus, parseDurationMs, parseMemoryMiB } from './units.js';

/** What a service's `options:` string (`docker create` flags) may set. */
export interface DockerOptions {
  name?: string;
  /** "K=V" entries from -e/--env, in order. */
  env: string[];
  entrypoint?: string[];
  memoryMiB?: number;
  cpus?: number;
  healthcheck?: HealthcheckSpec | 'none';
  user?: string;
  workdir?: string;
  tmpfs: string[];
  /** --network-alias: further names on the job network. */
  aliases: string[];
  /** --expose: container ports the job's other services may reach. */
  expose: number[];
}

interface OptionDef {
  long: string;
  short?: string;
  /** A flag takes no value. */
  flag?: boolean;
}

const OPTIONS: readonly OptionDef[] = [
  { long: 'cpus' },
  { long: 'entrypoint' },
  { long: 'env', short: 'e' },
  { long: 'expose' },
  { long: 'health-cmd' },
  { long: 'health-interval' },
  { long: 'health-retries' },
  { long: 'health-start-period' },
  { long: 'health-timeout' },
  { long: 'memory', short: 'm' },
  { long: 'name' },
  { long: 'network-alias' },
  { long: 'no-healthcheck', flag: true },
  { long: 'tmpfs' },
  { long: 'user', short: 'u' },
  { long: 'workdir', short: 'w' },
];

const SUPPORTED = OPTIONS.map((o) => (o.short ? `-${o.short}/--${o.long}` : `--${o.long}`)).join(', ');

/** The options as `docker create` reads them: `--opt VALUE`, `--opt=VALUE`, `-o VALUE`, `-oVALUE` or `-o=VALUE`. */
function readOptions(words: readonly string[]): { def: OptionDef; value: string }[] {
  const found: { def: OptionDef; value: string }[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    const match = /^--([^=]+)(?:=(.*))?$/s.exec(word) ?? /^-([^-])=?(.+)?$/s.exec(word);
    if (!match) throw new SpecError(`"${word}" is not an option; options start with - or --`);
    const [, name = '', inline] = match;
    const long = word.startsWith('--');
    const shown = long ? `--${name}` : `-${name}`;
    const def = OPTIONS.find((o) => (long ? o.long : o.short) === name);
    if (!def) throw new SpecError(`${shown} is not supported; supported options: ${SUPPORTED}`);
    if (def.flag) {
      if (inline !== undefined) throw new SpecError(`${shown} takes no value`);
      found.push({ def, value: '' });
      continue;
    }
    if (inline === undefined && i + 1 >= words.length) throw new SpecError(`${shown} needs a value`);
    found.push({ def, value: inline ?? (words[++i] as string) });
  }
  return found;
}

/** Parses a GitHub service's `options:` string; the supported flags only, anything else is refused. Pure. */
export function parseDockerOptions(text: string): DockerOptions {
  const result: DockerOptions = { env: [], tmpfs: [], aliases: [], expose: [] };
  const health: HealthOptions = { given: [], fields: {} };
  for (const { def, value } of readOptions(splitShellWords(text))) {
    try {
      applyOption(result, health, def.long, value);
    } catch (error: unknown) {
      if (error instanceof SpecError) throw new SpecError(`--${def.long}: ${error.message}`);
      throw error;
    }
  }
  const healthcheck = healthOptions(health);
  if (healthcheck) result.healthcheck = healthcheck;
  return result;
}

interface HealthOptions {
  /** The --health-* and --no-healthcheck options given, for messages. */
  given: string[];
  command?: string;
  disabled?: boolean;
  fields: Partial<Omit<HealthcheckSpec, 'test'>>;
}

function applyOption(result: DockerOptions, health: HealthOptions, option: string, value: string): void {
  if (option.includes('health')) health.given.push(`--${option}`);
  switch (option) {
    case 'cpus':
      result.cpus = parseCpus(value);
      return;
    case 'entrypoint':
      // Docker takes --entrypoint as one program, and "" as "no entrypoint".
      result.entrypoint = value === '' ? [] : [value];
      return;
    case 'env':
      if (value.indexOf('=') <= 0) throw new SpecError(`${JSON.stringify(value)} is not KEY=VALUE`);
      result.env.push(value);
      return;
    case 'memory':
      result.memoryMiB = parseMemoryMiB(value);
      return;
    case 'name':
      result.name = value;
      return;
    case 'network-alias':
      result.aliases.push(value);
      return;
    case 'expose': {
      const match = /^(\d{1,5})(\/tcp)?$/.exec(value);
      const port = Number(match?.[1]);
      if (!match || port < 1 || port > 65535)
        throw new SpecError(`--expose ${JSON.stringify(value)} is not a TCP port (PORT or PORT/tcp)`);
      result.expose.push(port);
      return;
    }
    case 'tmpfs':
      result.tmpfs.push(value);
      return;
    case 'user':
      result.user = value;
      return;
    case 'workdir':
      result.workdir = value;
      return;
    case 'no-healthcheck':
      health.disabled = true;
      return;
    case 'health-cmd':
      health.command = value;
      return;
    case 'health-interval':
      health.fields.intervalMs = parseDurationMs(value);
      return;
    case 'health-timeout':
      health.fields.timeoutMs = parseDurationMs(value);
      return;
    case 'health-start-period':
      health.fields.startPeriodMs = parseDurationMs(value);
      return;
    case 'health-retries':
      health.fields.retries = parseCount(value, 0);
      return;
  }
}

function healthOptions(health: HealthOptions): HealthcheckSpec | 'none' | undefined {
  if (health.disabled) {
    const others = health.given.filter((option) => option !== '--no-healthcheck');
    if (others.length > 0) throw new SpecError(`--no-healthcheck conflicts with ${others.join(', ')}`);
    return 'none';
  }
  if (health.given.length === 0) return undefined;
  if (health.command === undefined)
    throw new SpecError(`${health.given.join(', ')}: ${PARTIAL_HEALTHCHECK} (--health-cmd)`);
  if (health.command.trim() === '') throw new SpecError('--health-cmd: the command is empty');
  return healthcheck(['CMD-SHELL', health.command], health.fields);
}
