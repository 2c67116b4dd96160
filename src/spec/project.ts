import { parseComposeProject } from './compose.js';
import type { ContainerSpec } from './container.js';
import { parseServicesInput } from './services-input.js';

/** What a services YAML or compose file asks for: the services and, from compose, a network's subnet. */
export interface Project {
  services: ContainerSpec[];
  subnet: string | undefined;
}

/** A compose file has a top-level `services:` map; a services input has the services at the top. Pure. */
export function isComposeFile(text: string): boolean {
  return /^services\s*:/m.test(text);
}

/**
 * The project in `text`, read from `file`: a compose file (its `env_file`s
 * read through `readText`, `${VAR}`s from `variables`) or a services YAML.
 * `source` names it in messages about a services YAML. Pure but for `readText`.
 */
export function loadProject(
  text: string,
  file: string,
  readText: (file: string) => string,
  variables: Readonly<Record<string, string | undefined>>,
  source = file,
): Project {
  if (!isComposeFile(text)) return { services: parseServicesInput(text, source), subnet: undefined };
  const defined = Object.fromEntries(
    Object.entries(variables).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  const project = parseComposeProject(text, file, readText, defined);
  return { services: project.services, subnet: project.subnet };
}
