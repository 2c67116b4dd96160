import { splitList } from '../network/settings.js';
import { parseComposeFiles, type ComposeInput } from './compose.js';
import type { ContainerSpec } from './container.js';
import { parseServicesInput } from './services-input.js';

/** What a services YAML or compose file asks for: the services and, from compose, a network's subnet and the keys it ignored. */
export interface Project {
  services: ContainerSpec[];
  subnet: string | undefined;
  warnings: string[];
}

/** A compose file has a top-level `services:` map; a services input has the services at the top. Pure. */
export function isComposeFile(text: string): boolean {
  return /^services\s*:/m.test(text);
}

/**
 * The project in `files`, each with its text and path: a compose file, or
 * several merged in order as `docker compose -f a.yml -f b.yml` merges them
 * (their `env_file`s read through `readText`, `${VAR}`s from `variables`), or
 * one services YAML. `options.source` names a services YAML in messages;
 * `options.profiles` (else COMPOSE_PROFILES) are the compose profiles enabled.
 * Pure but for `readText`.
 */
export function loadProject(
  files: readonly ComposeInput[],
  readText: (file: string) => string | Buffer,
  variables: Readonly<Record<string, string | undefined>>,
  options: { source?: string; profiles?: readonly string[] } = {},
): Project {
  const [first] = files;
  if (first && files.length === 1 && !isComposeFile(first.text))
    return {
      services: parseServicesInput(first.text, options.source ?? first.file),
      subnet: undefined,
      warnings: [],
    };
  const defined = Object.fromEntries(
    Object.entries(variables).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  const project = parseComposeFiles(files, readText, {
    variables: defined,
    profiles: options.profiles ?? composeProfiles(variables),
  });
  return { services: project.services, subnet: project.subnet, warnings: project.warnings };
}

/** COMPOSE_PROFILES, as docker compose reads it: names separated by commas. Pure. */
export function composeProfiles(variables: Readonly<Record<string, string | undefined>>): string[] {
  return splitList(variables.COMPOSE_PROFILES);
}
