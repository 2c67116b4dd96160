import os from 'node:os';
import { Job } from '../engine/job.js';
import {
  hostSettings,
  parseTemplateMode,
  type HostSettings,
  type JobSettings,
  type TemplateMode,
} from '../engine/settings.js';
import { toolCacheEnv } from '../guest/bundle.js';
import { parseAccelChoice } from '../install/accel.js';
import { networkSettings, NetworkError, splitList, type NetworkSettings } from '../network/settings.js';
import { listOption, stringOption, UsageError, type ParsedArgs } from './args.js';

export type Environment = Readonly<Record<string, string | undefined>>;

/** What `hyper` takes from its environment, read once per command line. */
export interface CliEnvironment {
  host: HostSettings;
  /** Where a warning about the environment or the job goes (stderr). */
  warn: (line: string) => void;
  /** Every variable, for `-e NAME` and a compose file's `${VAR}`s. */
  vars: Environment;
}

export function cliEnvironment(vars: Environment, warn: (line: string) => void): CliEnvironment {
  const host = hostSettings(vars, os.homedir());
  // @actions/tool-cache (the guest bundle's cache) reads these; outside Actions they point into our cache.
  for (const [name, value] of Object.entries(toolCacheEnv(host.cacheDir))) process.env[name] ??= value;
  return { host, vars, warn };
}

/** The job in the state dir, with what this command line says about its settings. */
export async function openJob(env: CliEnvironment, given: Partial<JobSettings> = {}): Promise<Job> {
  const job = await Job.open(env.host, given);
  for (const warning of job.warnings) env.warn(warning);
  return job;
}

export const REGISTRY_OPTIONS = [
  { name: 'registry-mirror', value: true },
  { name: 'insecure-registry', value: true, multiple: true },
];

/** Registry settings from flags, else HYPER_REGISTRY_MIRROR and HYPER_INSECURE_REGISTRIES; undefined when none. */
export function registryOption(parsed: ParsedArgs, env: CliEnvironment): JobSettings['registry'] | undefined {
  const insecure = [
    ...listOption(parsed, 'insecure-registry'),
    ...splitList(env.vars.HYPER_INSECURE_REGISTRIES),
  ];
  const mirror = stringOption(parsed, 'registry-mirror') ?? (env.vars.HYPER_REGISTRY_MIRROR || undefined);
  if (!mirror && insecure.length === 0) return undefined;
  return { registryMirror: mirror, insecureRegistries: insecure };
}

/** --accel, else HYPER_ACCEL; undefined when neither is given. */
export function accelOption(parsed: ParsedArgs, env: CliEnvironment): JobSettings['accel'] | undefined {
  const text = stringOption(parsed, 'accel') ?? env.vars.HYPER_ACCEL;
  return text ? parseAccelChoice(text, '--accel') : undefined;
}

/** --template, else HYPER_TEMPLATES; undefined leaves the job's (auto unless saved otherwise). */
export function templateOption(parsed: ParsedArgs, env: CliEnvironment): TemplateMode | undefined {
  const text = stringOption(parsed, 'template') ?? env.vars.HYPER_TEMPLATES;
  return text
    ? parseTemplateMode(text, parsed.options.template === undefined ? 'HYPER_TEMPLATES' : '--template')
    : undefined;
}

/** The job network's flags, on every command that may make the network (up, run, import). */
export const NETWORK_OPTIONS = [
  { name: 'network', value: true },
  { name: 'egress', value: true },
  { name: 'egress-allow', value: true, multiple: true },
  { name: 'subnet', value: true },
];

/**
 * The job network's settings from flags, else HYPER_NETWORK, HYPER_EGRESS,
 * HYPER_EGRESS_ALLOW, HYPER_SUBNET (and a compose file's subnet); undefined
 * when nothing is said, so the job's saved settings hold.
 */
export function networkOption(
  parsed: ParsedArgs,
  env: CliEnvironment,
  fileSubnet?: string,
): NetworkSettings | undefined {
  const given = {
    mode: stringOption(parsed, 'network') ?? (env.vars.HYPER_NETWORK || undefined),
    egress: stringOption(parsed, 'egress') ?? (env.vars.HYPER_EGRESS || undefined),
    allow: [
      ...listOption(parsed, 'egress-allow').flatMap((entry) => splitList(entry)),
      ...splitList(env.vars.HYPER_EGRESS_ALLOW),
    ],
    subnet: stringOption(parsed, 'subnet') ?? (env.vars.HYPER_SUBNET || undefined) ?? fileSubnet,
  };
  if (!given.mode && !given.egress && given.allow.length === 0 && !given.subnet) return undefined;
  try {
    return networkSettings(given, {
      mode: '--network',
      egress: '--egress',
      allow: '--egress-allow',
      subnet: '--subnet',
    });
  } catch (error: unknown) {
    if (error instanceof NetworkError) throw new UsageError(error.message);
    throw error;
  }
}
