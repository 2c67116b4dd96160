import { splitList } from '../network/settings.js';
import { parseComposeProject } from './compose.js';
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
 * The project in `text`, read from `file`: a compose file (its `env_file`s
 * read through `readText`, `${VAR}`s from `variables`) or a services YAML.
 * `options.source` names it in messages about a services YAML; `options.profiles`
 * (else COMPOSE_PROFILES) are the compose profiles enabled. Pure but for `readText`.
 */
export function loadProject(
  text: string,
  file: string,
  readText: (file: string) => string | Buffer,
  variables: Readonly<Record<string, string | undefined>>,
  options: { source?: string; profiles?: readonly string[] } = {},
): Project {
  if (!isComposeFile(text))
    return { services: parseServicesInput(text, options.source ?? file), subnet: undefined, warnings: [] };
  const defined = Object.fromEntries(
    Object.entries(variables).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  const project = parseComposeProject(text, file, readText, {
    variables: defined,
    profiles: options.profiles ?? composeProfiles(variables),
  });
  return { services: project.services, subnet: project.subnet, warnings: project.warnings };
}

/** COMPOSE_PROFILES, as docker compose reads it: names separated by commas. Pure. */
export function composeProfiles(variables: Readonly<Record<string, string | undefined>>): string[] {
  return splitList(variables.COMPOSE_PROFILES);
}
