import path from 'node:path';
import { parseEnvFile } from './env-file.js';
import {
  checkEnvName,
  definedOnly,
  readCondition,
  readCpus,
  readDuration,
  readEnvMap,
  readHealthcheck,
  readImage,
  readMemory,
  readPorts,
  readServiceName,
  readWords,
} from './fields.js';
import { interpolate, type VariableMap } from './interpolate.js';
import { namedVolume } from '../storage/mounts.js';
import { checkComposeSchema } from './compose-schema-check.js';
import {
  CONFIG_KEYS,
  DEPENDS_ON_KEYS,
  DEPLOY_KEYS,
  FILE_GRANT_KEYS,
  NETWORK_KEYS,
  PORT_KEYS,
  RESOURCE_KEYS,
  SECRET_KEYS,
  SERVICE_KEYS,
  SERVICE_NETWORK_KEYS,
  TOP_KEYS,
  VOLUME_KEYS,
  VOLUME_MOUNT_KEYS,
  type KeyRule,
} from './compose-keys.js';
import {
  isHostname,
  parseHostEntry,
  SpecError,
  validateName,
  type ContainerSpec,
  type DependencyCondition,
  type GuestSettings,
  type ImageMount,
  type LifecycleHook,
  type PreStartStep,
  type RestartPolicy,
  type ServiceFile,
} from './container.js';
import { parseCount, parseShmMiB, parseVolumeSize } from './units.js';
import { CAPABILITIES, capabilityName, isGroupName, isSysctlName, ULIMITS } from '../guest/config.js';
import { parseYaml, type YamlValue } from './yaml-value.js';

/** Reads a file named in the compose file (env_file, a secret), by a path already joined to the file's directory. */
export type ReadFile = (path: string) => string | Buffer;

export interface ComposeProject {
  /** The services the profiles enable, in file order. */
  services: ContainerSpec[];
  /** The top-level named volumes, for when volumes are set up. */
  volumes: string[];
  /** The job network's subnet, from a top-level network's `ipam: { config: [{ subnet }] }`. */
  subnet?: string;
  /** One line per key that was accepted and ignored, with where it is and why. */
  warnings: string[];
}

export interface ComposeOptions {
  /** `${VAR}` values and bare environment entries. */
  variables?: VariableMap;
  /** The profiles enabled (`--profile`, COMPOSE_PROFILES); `*` enables every one. */
  profiles?: readonly string[];
  /** Where `include:` may read from: the top file's directory. */
  projectDir?: string;
  /**
   * What relative paths resolve from; else the first file's directory. Every
   * file merged after the first resolves from it too, as under docker compose.
   */
  baseDir?: string;
  /** The files including this one, for the cycle check. */
  including?: readonly string[];
}

/** A compose file to read: its text, and its path, which messages name. */
export interface ComposeInput {
  text: string;
  file: string;
}

const ONE_NETWORK =
  'every service of a job shares one network; of the network settings only driver: bridge, ipam subnet and aliases are supported';

/** The services of a compose file. See parseComposeProject. */
export function parseComposeFile(
  text: string,
  file: string,
  readFile: ReadFile,
  variables: VariableMap = {},
): ContainerSpec[] {
  return parseComposeProject(text, file, readFile, { variables }).services;
}

/**
 * A compose file, checked against the Compose Specification's schema, then
 * each key given the answer compose-keys.ts has for it: read, a warning, or
 * an error naming it. `${VAR}` in values is taken from `options.variables`;
 * relative paths are relative to `file`'s directory (or `options.baseDir`).
 * Pure but for `readFile`.
 */
export function parseComposeProject(
  text: string,
  file: string,
  readFile: ReadFile,
  options: ComposeOptions = {},
): ComposeProject {
  return parseComposeFiles([{ text, file }], readFile, options);
}

/**
 * Compose files merged in order, as `docker compose -f a.yml -f b.yml` merges
 * them: a service in several files is the later one over the earlier, by the
 * rules `extends` merges with, and may take its image from any of them; the
 * top-level volumes and the subnet are the later file's where both set them.
 * Relative paths in every file resolve from the first file's directory (or
 * `options.baseDir`). One file is parseComposeProject. Pure but for `readFile`.
 */
export function parseComposeFiles(
  files: readonly ComposeInput[],
  readFile: ReadFile,
  options: ComposeOptions = {},
): ComposeProject {
  const [first] = files;
  if (!first) throw new SpecError('no compose file was given');
  const each = {
    ...options,
    projectDir: options.projectDir ?? path.dirname(first.file),
    baseDir: options.baseDir ?? path.dirname(first.file),
  };
  const merging = files.length > 1;
  const parts = files.map(({ text, file }) => readComposeFile(text, file, readFile, each, merging));
  return finishProject(parts.reduce(mergeParts), options.profiles ?? []);
}

/** What `include:` brings in, put together. */
interface Included {
  services: ContainerSpec[];
  volumes: string[];
  subnet?: string;
  warnings: string[];
}

/** A compose file read, or files merged: the services as written (profiles not yet applied), and what is declared beside them. */
interface ComposeParts {
  /** The files read, in order. */
  files: string[];
  services: ParsedService[];
  /** The files each service is written in, by name: what a message about it names. */
  sources: Map<string, string[]>;
  /** The top-level named volumes, each with the size its driver_opts set, if any. */
  declared: Map<string, number | undefined>;
  subnet?: { cidr: string; file: string };
  warnings: string[];
  /** What the files' includes bring in; their warnings are in `warnings`. */
  included: Omit<Included, 'warnings'>;
}

/**
 * One compose file, read into parts: the schema checked, each key answered,
 * its includes and extends resolved. `imageElsewhere`: another file merged
 * with this one may give a service its image.
 */
function readComposeFile(
  text: string,
  file: string,
  readFile: ReadFile,
  options: ComposeOptions,
  imageElsewhere: boolean,
): ComposeParts {
  const variables = options.variables ?? {};
  const root = parseYaml(text, file, '', (value) => interpolate(value, variables));
  if (root.isNull) throw root.error('the file is empty; a compose file needs a services: map');
  checkComposeSchema(root);
  const warnings: string[] = [];
  const top = answered(root, TOP_KEYS, warnings);
  const services = top.get('services');
  if (!services || services.isNull)
    throw root.error('services: is missing; a compose file needs a services: map');
  const networks = top.get('networks');
  const subnet = networks && !networks.isNull ? readTopNetworks(networks, warnings) : undefined;
  const volumes = top.get('volumes');
  const declared =
    volumes && !volumes.isNull
      ? readVolumeDeclarations(volumes, warnings)
      : new Map<string, number | undefined>();
  const context: Context = {
    dir: options.baseDir ?? path.dirname(file),
    readFile,
    variables,
    warnings,
    imageElsewhere,
  };
  const grants = {
    secrets: readSources(top.get('secrets'), SECRET_KEYS, context),
    configs: readSources(top.get('configs'), CONFIG_KEYS, context),
  };
  const included = readIncludes(top.get('include'), file, readFile, options);
  warnings.push(...included.warnings);
  const extending = { file, root, readFile, variables, grants, warnings };
  const parsed = services
    .entries()
    .map(({ key, value }) => resolveService(readServiceName(key, value), value, context, extending, []));
  return {
    files: [file],
    services: parsed,
    sources: new Map(parsed.map((service) => [service.spec.name, [file]])),
    declared,
    ...(subnet ? { subnet: { cidr: subnet, file } } : {}),
    warnings,
    included: { services: included.services, volumes: included.volumes, subnet: included.subnet },
  };
}

/**
 * A later file's parts over an earlier one's: a service in both is the later
 * one merged over the earlier (mergeExtended), a new one comes after; a
 * declared volume takes the later size where it sets one; the later subnet wins.
 */
function mergeParts(earlier: ComposeParts, later: ComposeParts): ComposeParts {
  const services = [...earlier.services];
  const sources = new Map(earlier.sources);
  for (const service of later.services) {
    const name = service.spec.name;
    const at = services.findIndex((s) => s.spec.name === name);
    if (at < 0) services.push(service);
    else services[at] = mergeExtended(services[at] as ParsedService, service);
    sources.set(name, [...(sources.get(name) ?? []), ...(later.sources.get(name) ?? [])]);
  }
  const declared = new Map(earlier.declared);
  for (const [name, size] of later.declared) declared.set(name, size ?? earlier.declared.get(name));
  const subnet = later.subnet ?? earlier.subnet;
  return {
    files: [...earlier.files, ...later.files],
    services,
    sources,
    declared,
    ...(subnet ? { subnet } : {}),
    warnings: [...earlier.warnings, ...later.warnings],
    included: mergeIncluded(earlier.included, later.included, later.files.join(', ')),
  };
}

/** What the includes of two merged files bring in: a service both bring in, or two subnets, is an error naming `file`, the later. */
function mergeIncluded(
  earlier: ComposeParts['included'],
  later: ComposeParts['included'],
  file: string,
): ComposeParts['included'] {
  for (const service of later.services)
    if (earlier.services.some((s) => s.name === service.name))
      throw new SpecError(`${file}: service "${service.name}" is defined by two included files`);
  if (earlier.subnet && later.subnet && earlier.subnet !== later.subnet)
    throw new SpecError(
      `${file}: an included file's subnet ${later.subnet} differs from another included file's, ${earlier.subnet}`,
    );
  const subnet = later.subnet ?? earlier.subnet;
  return {
    services: [...earlier.services, ...later.services],
    volumes: [...earlier.volumes, ...later.volumes],
    ...(subnet ? { subnet } : {}),
  };
}

/**
 * A project from its parts: the services the profiles enable, each with an
 * image, their volume sizes, and the included projects' beside them. The
 * checks that need every file merged are made here.
 */
function finishProject(parts: ComposeParts, profiles: readonly string[]): ComposeProject {
  const { included, warnings } = parts;
  const sourceOf = (name: string): string => (parts.sources.get(name) ?? parts.files).join(', ');
  const missing = parts.services.find((service) => isEnabled(service, profiles) && !service.spec.image);
  if (missing) {
    const name = missing.spec.name;
    const written = parts.sources.get(name) ?? parts.files;
    throw new SpecError(
      parts.files.length > 1
        ? `service "${name}" has no image in ${written.join(' or ')}; add image: NAME[:TAG]`
        : `${sourceOf(name)}: service "${name}" has no image, nor does the service it extends`,
    );
  }
  const sized = parts.services.map((service) => ({
    ...service,
    spec: withVolumeSizes(service.spec, parts.declared),
  }));
  const own = enabledServices(sized, profiles, sourceOf, warnings, included.services);
  for (const service of own) {
    if (included.services.some((s) => s.name === service.name))
      throw new SpecError(
        `${sourceOf(service.name)}: service "${service.name}" is also defined by an included file; a name belongs to one service`,
      );
  }
  if (parts.subnet && included.subnet && parts.subnet.cidr !== included.subnet)
    throw new SpecError(
      `${parts.subnet.file}: the job network's subnet is ${parts.subnet.cidr} here and ${included.subnet} in an included file`,
    );
  const subnet = parts.subnet?.cidr ?? included.subnet;
  const project = {
    services: [...included.services, ...own],
    volumes: [...new Set([...included.volumes, ...parts.declared.keys()])],
    // A base service that is also a service of its own is read twice: one warning is enough.
    warnings: [...new Set(warnings)],
    ...(subnet ? { subnet } : {}),
  };
  checkDeclaredVolumes(project, sourceOf);
  return project;
}

/**
 * What `include:` brings in: the projects it names, each parsed on its own
 * (a `path:` list as files merged), then put together.
 */
function readIncludes(
  value: YamlValue | undefined,
  file: string,
  readFile: ReadFile,
  options: ComposeOptions,
): Included {
  const result = { services: [] as ContainerSpec[], volumes: [] as string[], warnings: [] as string[] };
  let subnet: string | undefined;
  if (!value || value.isNull) return result;
  const root = options.projectDir ?? path.dirname(file);
  const here = options.baseDir ?? path.dirname(file);
  const chain = [...(options.including ?? []), file];
  for (const item of value.items()) {
    const fields = item.kind === 'a map' ? new Map(item.entries().map((e) => [e.key, e.value])) : undefined;
    const pathValue = fields ? fields.get('path') : item;
    if (!pathValue) throw item.error('path is missing');
    const targets = pathValue.kind === 'a list' ? pathValue.items() : [pathValue];
    if (targets.length === 0) throw pathValue.error('the list is empty; give the compose files to include');
    const resolved = targets.map((target) => {
      const name = path.resolve(here, target.string('a path to a compose file'));
      const inside = path.relative(root, name);
      if (inside.startsWith('..') || path.isAbsolute(inside))
        throw target.error(`${name} is outside the project directory ${root}; include files from under it`);
      if (chain.includes(name))
        throw target.error(
          `include makes a cycle: ${[...chain, name].map((f) => path.relative(root, f) || f).join(' -> ')}`,
        );
      return name;
    });
    // What a message about the include as a whole points at: its one file, else its list.
    const at = targets.length === 1 ? (targets[0] as YamlValue) : pathValue;
    const projectDir = fields?.get('project_directory');
    const dir = projectDir
      ? path.resolve(here, projectDir.string('a directory'))
      : path.dirname(resolved[0] as string);
    const defaults = includeDefaults(fields?.get('env_file'), dir, here, readFile, options.variables ?? {});
    const inputs = resolved.map((name, index) => {
      try {
        return { text: readFile(name).toString(), file: name };
      } catch (error: unknown) {
        throw (targets[index] as YamlValue).error(`cannot read ${name}: ${(error as Error).message}`);
      }
    });
    // The including project's environment wins over the included one's .env.
    const project = parseComposeFiles(inputs, readFile, {
      ...options,
      variables: { ...defaults, ...options.variables },
      projectDir: root,
      baseDir: dir,
      including: chain,
    });
    for (const service of project.services) {
      if (result.services.some((s) => s.name === service.name))
        throw at.error(`service "${service.name}" is defined by two included files`);
      result.services.push(service);
    }
    result.volumes.push(...project.volumes);
    result.warnings.push(...project.warnings);
    if (project.subnet && subnet && project.subnet !== subnet)
      throw at.error(`its subnet ${project.subnet} differs from another included file's, ${subnet}`);
    subnet ??= project.subnet;
  }
  return { ...result, ...(subnet ? { subnet } : {}) };
}

/**
 * The variables an included project interpolates with when the environment
 * does not set them: its env_file (relative to `from`), else the .env in `dir`.
 */
function includeDefaults(
  value: YamlValue | undefined,
  dir: string,
  from: string,
  readFile: ReadFile,
  variables: VariableMap,
): VariableMap {
  const files = value
    ? value.stringOrList().map((name) => path.resolve(from, name))
    : [path.join(dir, '.env')];
  const defaults: Record<string, string> = {};
  for (const envFile of files) {
    let text: string;
    try {
      text = readFile(envFile).toString();
    } catch (error: unknown) {
      if (value) throw value.error(`cannot read ${envFile}: ${(error as Error).message}`);
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    for (const entry of parseEnvFile(text, envFile, variables)) {
      const eq = entry.indexOf('=');
      defaults[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
  }
  return defaults;
}

/** Where `extends:` looks for the services it names. */
interface Extending {
  file: string;
  root: YamlValue;
  readFile: ReadFile;
  variables: VariableMap;
  grants: { secrets: Sources; configs: Sources };
  warnings: string[];
}

/**
 * A service, with what `extends:` names merged under it as Compose merges
 * them: the base service parsed in its own file (its relative paths are its
 * own), then this one's keys over it. A cycle is an error that shows it.
 */
function resolveService(
  name: string,
  value: YamlValue,
  context: Context,
  extending: Extending,
  chain: readonly string[],
): ParsedService {
  const own = parseService(name, value, context, extending.grants);
  const reference =
    value.kind === 'a map' ? value.entries().find((e) => e.key === 'extends')?.value : undefined;
  if (!reference) return own;
  const fields =
    reference.kind === 'a map' ? new Map(reference.entries().map((e) => [e.key, e.value])) : undefined;
  const baseName = (fields ? fields.get('service') : reference)?.string('a service name') ?? '';
  const fileValue = fields?.get('file');
  let baseFile = extending.file;
  let baseRoot = extending.root;
  if (fileValue) {
    baseFile = path.resolve(context.dir, fileValue.string('a path to a compose file'));
    let text: string;
    try {
      text = extending.readFile(baseFile).toString();
    } catch (error: unknown) {
      throw fileValue.error(`cannot read ${baseFile}: ${(error as Error).message}`);
    }
    baseRoot = parseYaml(text, baseFile, '', (t) => interpolate(t, extending.variables));
    checkComposeSchema(baseRoot);
  }
  const services = baseRoot.isNull ? undefined : baseRoot.entries().find((e) => e.key === 'services')?.value;
  const baseValue =
    services?.isNull === false ? services.entries().find((e) => e.key === baseName)?.value : undefined;
  if (!baseValue) throw reference.error(`service "${baseName}" is not defined in ${baseFile}`);
  const here = `${extending.file}\0${name}`;
  const there = `${baseFile}\0${baseName}`;
  const seen = chain.length === 0 ? [here] : chain;
  if (seen.includes(there)) {
    const names = [...seen, there].map((entry) => entry.split('\0')[1]);
    throw reference.error(`extends makes a cycle: ${names.join(' -> ')}`);
  }
  const base = resolveService(
    baseName,
    baseValue,
    { ...context, dir: path.dirname(baseFile) },
    { ...extending, file: baseFile, root: baseRoot },
    [...seen, there],
  );
  return mergeExtended(withAbsoluteBinds(base, own.spec.baseDir), own);
}

/**
 * A base service from another file, its relative bind sources made absolute
 * from its own directory: the merged service resolves the rest from the
 * extending file's. Pure.
 */
function withAbsoluteBinds(base: ParsedService, dir: string | undefined): ParsedService {
  const from = base.spec.baseDir;
  if (from === undefined || from === dir) return base;
  const volumes = base.spec.volumes.map((volume) => {
    const [source = '', ...rest] = volume.split(':');
    return rest.length > 0 && source.startsWith('.') && namedVolume(volume) === undefined
      ? [path.resolve(from, source), ...rest].join(':')
      : volume;
  });
  return { ...base, spec: { ...base.spec, volumes } };
}

/**
 * A service over the one it extends, by Compose's merge rules: maps merge
 * (this one's keys win), lists are put together (the base's first), and
 * ports, volumes and files are unique by their target, this one's winning;
 * everything else is this one's when it sets it. Pure.
 */
function mergeExtended(base: ParsedService, own: ParsedService): ParsedService {
  const b = base.spec;
  const o = own.spec;
  const uniqueBy = <T>(items: T[], key: (item: T) => string): T[] => {
    const byKey = new Map<string, T>();
    for (const item of items) {
      byKey.delete(key(item));
      byKey.set(key(item), item);
    }
    return [...byKey.values()];
  };
  const target = (volume: string): string => {
    const parts = volume.split(':');
    return parts.length >= 2 && parts[0]?.length ? (parts[1] ?? volume) : (parts[0] ?? volume);
  };
  const guest =
    b.guest || o.guest
      ? definedOnly({
          ...b.guest,
          ...o.guest,
          sysctls:
            b.guest?.sysctls || o.guest?.sysctls ? { ...b.guest?.sysctls, ...o.guest?.sysctls } : undefined,
          ulimits:
            b.guest?.ulimits || o.guest?.ulimits ? { ...b.guest?.ulimits, ...o.guest?.ulimits } : undefined,
          capAdd:
            b.guest?.capAdd || o.guest?.capAdd
              ? [...(b.guest?.capAdd ?? []), ...(o.guest?.capAdd ?? [])]
              : undefined,
          capDrop:
            b.guest?.capDrop || o.guest?.capDrop
              ? [...(b.guest?.capDrop ?? []), ...(o.guest?.capDrop ?? [])]
              : undefined,
          groupAdd:
            b.guest?.groupAdd || o.guest?.groupAdd
              ? [...new Set([...(b.guest?.groupAdd ?? []), ...(o.guest?.groupAdd ?? [])])]
              : undefined,
        })
      : undefined;
  const spec: ContainerSpec = definedOnly({
    ...b,
    ...o,
    name: o.name,
    image: o.image || b.image,
    env: [...b.env, ...o.env],
    ports: uniqueBy(
      [...b.ports, ...o.ports],
      (p) => `${p.hostIp}|${p.containerPort}|${p.hostPort}|${p.protocol}`,
    ),
    volumes: uniqueBy([...b.volumes, ...o.volumes], target),
    tmpfs: [...new Set([...b.tmpfs, ...o.tmpfs])],
    imageMounts:
      b.imageMounts || o.imageMounts
        ? uniqueBy([...(b.imageMounts ?? []), ...(o.imageMounts ?? [])], (m) => m.target)
        : undefined,
    dependsOn: uniqueBy([...b.dependsOn, ...o.dependsOn], (d) => d.service),
    aliases: b.aliases || o.aliases ? [...new Set([...(b.aliases ?? []), ...(o.aliases ?? [])])] : undefined,
    expose: b.expose || o.expose ? [...new Set([...(b.expose ?? []), ...(o.expose ?? [])])] : undefined,
    labels: b.labels || o.labels ? { ...b.labels, ...o.labels } : undefined,
    extraHosts:
      b.extraHosts || o.extraHosts
        ? uniqueBy([...(b.extraHosts ?? []), ...(o.extraHosts ?? [])], (h) => h.host)
        : undefined,
    files:
      b.files || o.files ? uniqueBy([...(b.files ?? []), ...(o.files ?? [])], (f) => f.target) : undefined,
    preStart: b.preStart || o.preStart ? [...(b.preStart ?? []), ...(o.preStart ?? [])] : undefined,
    postStart: b.postStart || o.postStart ? [...(b.postStart ?? []), ...(o.postStart ?? [])] : undefined,
    preStop: b.preStop || o.preStop ? [...(b.preStop ?? []), ...(o.preStop ?? [])] : undefined,
    guest,
  });
  return {
    spec,
    profiles: [...new Set([...base.profiles, ...own.profiles])],
    optional: new Set([...base.optional, ...own.optional]),
  };
}

interface ParsedService {
  spec: ContainerSpec;
  profiles: string[];
  /** The dependencies a service can start without (`required: false`). */
  optional: Set<string>;
}

/** A service runs when it has no profiles, or one of them is enabled. */
function isEnabled(service: ParsedService, profiles: readonly string[]): boolean {
  return (
    service.profiles.length === 0 ||
    profiles.includes('*') ||
    service.profiles.some((profile) => profiles.includes(profile))
  );
}

/**
 * The services the profiles enable. A dependency on a service left out is an
 * error that names its profile, unless it is not required. `sourceOf` names
 * the file(s) a service is written in.
 */
function enabledServices(
  services: ParsedService[],
  profiles: readonly string[],
  sourceOf: (service: string) => string,
  warnings: string[],
  included: readonly ContainerSpec[],
): ContainerSpec[] {
  const enabled = (service: ParsedService): boolean => isEnabled(service, profiles);
  const byName = new Map(services.map((service) => [service.spec.name, service]));
  for (const spec of included) byName.set(spec.name, { spec, profiles: [], optional: new Set() });
  return services.filter(enabled).map(({ spec, optional }) => ({
    ...spec,
    dependsOn: spec.dependsOn.filter(({ service }) => {
      const dependency = byName.get(service);
      if (dependency === undefined || enabled(dependency)) {
        if (dependency === undefined && optional.has(service)) {
          warnings.push(
            `${sourceOf(spec.name)}: service "${spec.name}" starts without "${service}", which is not defined (required: false)`,
          );
          return false;
        }
        return true;
      }
      if (optional.has(service)) return false;
      const names = dependency.profiles.map((profile) => `"${profile}"`).join(' or ');
      throw new SpecError(
        `${sourceOf(spec.name)}: service "${spec.name}" depends on "${service}", which is only in profile ${names}; enable it with --profile ${dependency.profiles[0] ?? ''} (or set required: false)`,
      );
    }),
  }));
}

/** As Compose: a named volume a service uses must be declared under the top-level volumes:. */
function checkDeclaredVolumes(
  project: { services: ContainerSpec[]; volumes: string[] },
  sourceOf: (service: string) => string,
): void {
  for (const service of project.services) {
    for (const volume of service.volumes) {
      const name = namedVolume(volume);
      if (name !== undefined && !project.volumes.includes(name)) {
        throw new SpecError(
          `${sourceOf(service.name)}: service "${service.name}" uses volume "${name}", which is not declared under the top-level volumes:`,
        );
      }
    }
  }
}

/** The sizes the top-level volumes: set for the named volumes a service uses, carried with it to where they are made. */
function withVolumeSizes(
  service: ContainerSpec,
  declared: ReadonlyMap<string, number | undefined>,
): ContainerSpec {
  const sizes = service.volumes.flatMap((volume) => {
    const name = namedVolume(volume);
    const size = name === undefined ? undefined : declared.get(name);
    return name === undefined || size === undefined ? [] : [[name, size] as const];
  });
  return sizes.length > 0 ? { ...service, volumeSizes: Object.fromEntries(sizes) } : service;
}

/**
 * The keys of a map by the answers in `table`: an ignored one becomes a
 * warning (unless it is empty or false: nothing was asked), a refused one an
 * error with the reason; the others are returned. `x-` extension keys are
 * left out, as Compose does.
 */
function answered(
  value: YamlValue,
  table: Readonly<Record<string, KeyRule>>,
  warnings: string[],
): Map<string, YamlValue> {
  const fields = new Map<string, YamlValue>();
  for (const { key, value: field } of value.entries()) {
    if (key.startsWith('x-')) continue;
    const rule = table[key];
    if (!rule) throw field.unknownKey(Object.keys(table));
    if (rule.answer === 'refused') {
      if (rule.harmless?.includes(scalarText(field) ?? '')) continue;
      throw field.error(rule.why ?? 'not supported');
    }
    if (rule.answer === 'ignored') {
      if (!asksNothing(field)) warnings.push(`${field.source}: ${field.where}: ignored: ${rule.why ?? ''}`);
      continue;
    }
    fields.set(key, field);
  }
  return fields;
}

function scalarText(value: YamlValue): string | undefined {
  return value.kind === 'a string' || value.kind === 'a number' || value.kind === 'a boolean'
    ? value.text()
    : undefined;
}

function asksNothing(value: YamlValue): boolean {
  if (value.isNull) return true;
  if (value.kind === 'a boolean') return !value.boolean();
  if (value.kind === 'a list') return value.items().length === 0;
  if (value.kind === 'a map') return value.entries().length === 0;
  return false;
}

interface Context {
  dir: string;
  readFile: ReadFile;
  variables: VariableMap;
  warnings: string[];
  /** A service may lack image: here: another file merged with this one may give it. */
  imageElsewhere?: boolean;
}

/** The top-level secrets and configs, by name: their content, read now. */
type Sources = Map<string, Buffer>;

function readSources(
  value: YamlValue | undefined,
  table: Readonly<Record<string, KeyRule>>,
  context: Context,
): Sources {
  const sources: Sources = new Map();
  if (!value || value.isNull) return sources;
  for (const { key, value: entry } of value.entries()) {
    const fields = answered(entry, table, context.warnings);
    const file = fields.get('file');
    const environment = fields.get('environment');
    const content = fields.get('content');
    if (file) {
      const resolved = resolvePath(file.string('a path to a file'), context);
      sources.set(key, Buffer.from(readNamedFile(file, resolved, context)));
    } else if (environment) {
      const name = environment.string('a variable name');
      const variable = context.variables[name];
      if (variable === undefined) throw environment.error(`the variable ${name} is not set`);
      sources.set(key, Buffer.from(variable));
    } else if (content) {
      sources.set(key, Buffer.from(content.string()));
    } else {
      throw entry.error('give file:, environment: or content:');
    }
  }
  return sources;
}

function resolvePath(name: string, context: Context): string {
  return path.isAbsolute(name) ? name : path.join(context.dir, name);
}

function readNamedFile(at: YamlValue, resolved: string, context: Context): string | Buffer {
  try {
    return context.readFile(resolved);
  } catch (error: unknown) {
    throw at.error(`cannot read ${resolved}: ${(error as Error).message}`);
  }
}

function parseService(
  name: string,
  value: YamlValue,
  context: Context,
  grants: { secrets: Sources; configs: Sources },
): ParsedService {
  if (value.kind !== 'a map') throw value.expected('a map with at least image:');
  const fields = answered(value, SERVICE_KEYS, context.warnings);
  const image = fields.get('image');
  if (!image && !fields.has('extends') && !context.imageElsewhere)
    throw value.error(`service "${name}" has no image; add image: NAME[:TAG]`);
  const get = fieldReader(fields);
  const mounts = get('volumes', (field) => readVolumes(field, context)) ?? {
    volumes: [],
    tmpfs: [],
    images: [],
  };
  const deploy = get('deploy', (field) => readDeploy(field, context)) ?? {};
  const dependencies = get('depends_on', (field) => readDependsOn(field, context)) ?? [];
  const containerName = get('container_name', (field) => readContainerName(field));
  const replicas = pick(fields.get('scale'), deploy.replicas, readReplicas, 'scale', 'deploy.replicas');
  if (containerName && replicas !== undefined && replicas > 1)
    throw (fields.get('container_name') as YamlValue).error(
      `container_name "${containerName}" names one container, and ${name} has ${replicas} replicas; remove container_name or the replicas`,
    );
  const aliases = [
    ...(get('networks', (field) => readServiceNetworks(field, context)) ?? []),
    ...(containerName && containerName !== name ? [containerName] : []),
  ];
  get('platform', readPlatform);
  const memory = pick(
    fields.get('mem_limit'),
    deploy.memory,
    readMemory,
    'mem_limit',
    'deploy.resources.limits.memory',
  );
  const cpus = pick(
    fields.get('cpus') ?? fields.get('cpu_count'),
    deploy.cpus,
    readCpus,
    'cpus',
    'deploy.resources.limits.cpus',
  );
  const spec: ContainerSpec = definedOnly({
    name,
    image: image ? readImage(image) : '',
    env: [
      ...(get('env_file', (field) => readKeyValueFiles(field, context)) ?? []),
      ...(get('environment', (field) => readEnvironment(field, context.variables)) ?? []),
    ],
    ports: get('ports', (field) => readPorts(field, (item) => readLongPort(item, context))) ?? [],
    volumes: mounts.volumes,
    imageMounts: mounts.images.length > 0 ? mounts.images : undefined,
    baseDir: context.dir,
    command: get('command', readWords),
    entrypoint: get('entrypoint', readWords),
    healthcheck: get('healthcheck', readHealthcheck),
    memoryMiB: memory,
    cpus,
    dependsOn: dependencies.map(({ service, condition }) => ({ service, condition })),
    workdir: get('working_dir', (field) => field.string()),
    user: get('user', (field) => field.text()),
    tmpfs: [...(get('tmpfs', (field) => field.stringOrList()) ?? []), ...mounts.tmpfs],
    aliases: aliases.length > 0 ? aliases : undefined,
    expose: get('expose', readExpose),
    labels: readLabels(fields, context),
    extraHosts: get('extra_hosts', readExtraHosts),
    stopSignal: get('stop_signal', (field) => field.string('a signal such as SIGTERM')),
    stopGraceMs: get('stop_grace_period', readDuration),
    hostname: get('hostname', readHostname),
    guest: withPidsLimit(
      withDeployRestart(readGuestSettings(fields), deploy.restart, fields.get('restart')),
      pick(
        fields.get('pids_limit'),
        deploy.pids,
        readPidsLimit,
        'pids_limit',
        'deploy.resources.limits.pids',
      ),
    ),
    files: readGrants(fields, grants),
    replicas: replicas !== undefined && replicas > 1 ? replicas : undefined,
    containerName,
    preStart: get('pre_start', (field) => readPreStart(field, context)),
    postStart: get('post_start', (field) => readHooks(field, context)),
    preStop: get('pre_stop', (field) => readHooks(field, context)),
  });
  return {
    spec,
    profiles: get('profiles', (field) => field.items().map((item) => item.string('a profile name'))) ?? [],
    optional: new Set(dependencies.filter((d) => !d.required).map((d) => d.service)),
  };
}

/** A setting given by a service key and by deploy.resources.limits: they must agree. */
function pick<T>(
  field: YamlValue | undefined,
  limit: YamlValue | undefined,
  read: (value: YamlValue) => T,
  key: string,
  limitKey: string,
): T | undefined {
  const given = field && !field.isNull ? read(field) : undefined;
  const limited = limit && !limit.isNull ? read(limit) : undefined;
  if (given !== undefined && limited !== undefined && given !== limited && limit)
    throw limit.error(`${limitKey} differs from ${key}; give one of them`);
  return given ?? limited;
}

/** deploy: resources.limits size the VM; the rest is answered by the table. */
function readDeploy(
  value: YamlValue,
  context: Context,
): {
  memory?: YamlValue;
  cpus?: YamlValue;
  pids?: YamlValue;
  replicas?: YamlValue;
  restart?: GuestSettings['restart'];
} {
  const fields = answered(value, DEPLOY_KEYS, context.warnings);
  const policy = fields.get('restart_policy');
  const replicas = fields.get('replicas');
  const others = definedOnly({
    replicas: replicas && !replicas.isNull ? replicas : undefined,
    restart: policy && !policy.isNull ? readRestartPolicy(policy) : undefined,
  });
  const resources = fields.get('resources');
  if (!resources || resources.isNull) return others;
  const sections = new Map(resources.entries().map(({ key, value: entry }) => [key, entry]));
  const reservations = sections.get('reservations');
  if (reservations && !reservations.isNull) {
    answered(reservations, RESOURCE_KEYS, context.warnings);
    if (!asksNothing(reservations))
      context.warnings.push(
        `${reservations.source}: ${reservations.where}: ignored: a VM has the memory and vCPUs of its limits`,
      );
  }
  const limits = sections.get('limits');
  if (!limits || limits.isNull) return others;
  const limited = answered(limits, RESOURCE_KEYS, context.warnings);
  return definedOnly({
    memory: limited.get('memory'),
    cpus: limited.get('cpus'),
    pids: limited.get('pids'),
    ...others,
  });
}

/** deploy.restart_policy where restart: is not given; both must agree. */
function withDeployRestart(
  settings: GuestSettings | undefined,
  deployed: GuestSettings['restart'],
  given: YamlValue | undefined,
): GuestSettings | undefined {
  if (!deployed) return settings;
  const restart = settings?.restart;
  if (restart && JSON.stringify(restart) !== JSON.stringify(deployed) && given)
    throw given.error('restart differs from deploy.restart_policy; give one of them');
  return { ...settings, restart: deployed };
}

/** `restart:` no, always, on-failure[:N] or unless-stopped, as docker run --restart takes it. */
function readRestart(value: YamlValue): GuestSettings['restart'] {
  const text = value.string('a restart policy such as on-failure:3');
  const match = /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(text);
  if (!match || (match[2] !== undefined && match[1] !== 'on-failure'))
    throw value.error(`"${text}" is not a restart policy: use no, always, on-failure[:N] or unless-stopped`);
  const policy = match[1] as RestartPolicy;
  return match[2] !== undefined ? { policy, maxRetries: Number(match[2]) } : { policy };
}

/** deploy.restart_policy: condition none, on-failure or any, and max_attempts. */
function readRestartPolicy(value: YamlValue): GuestSettings['restart'] {
  const fields = new Map(value.entries().map((entry) => [entry.key, entry.value]));
  const condition = fields.get('condition')?.string() ?? 'any';
  const policies: Record<string, RestartPolicy> = { none: 'no', 'on-failure': 'on-failure', any: 'always' };
  const policy = policies[condition];
  if (!policy) throw value.error(`condition "${condition}" is not none, on-failure or any`);
  const attempts = fields.get('max_attempts');
  return attempts
    ? { policy, maxRetries: attempts.attempt(() => parseCount(attempts.text(), 0)) }
    : { policy };
}

/** A replica count: a whole number of at least 1. */
function readReplicas(value: YamlValue): number {
  const text = value.text('a number of replicas');
  if (!/^\d+$/.test(text) || Number(text) < 1)
    throw value.error(`"${text}" is not a number of replicas: give a whole number of at least 1`);
  return Number(text);
}

const PLATFORMS = ['linux/amd64', 'linux/x86_64', 'linux/amd64/v1', 'linux/amd64/v2', 'linux/amd64/v3'];

function readPlatform(value: YamlValue): void {
  const platform = value.string('a platform such as linux/amd64');
  if (!PLATFORMS.includes(platform.toLowerCase()))
    throw value.error(`"${platform}" cannot run here: service VMs are linux/amd64`);
}

function readContainerName(value: YamlValue): string {
  const name = value.string('a container name');
  value.attempt(() => validateName(name));
  return name;
}

function readHostname(value: YamlValue): string {
  const name = value.text('a host name');
  if (!isHostname(name))
    throw value.error(`"${name}" is not a host name: labels of letters, digits and "-", at most 63 in all`);
  return name;
}

/** labels (a map, or KEY=VALUE list), on top of those its label_file(s) give. */
function readLabels(fields: Map<string, YamlValue>, context: Context): Record<string, string> | undefined {
  const labels = new Map<string, string>();
  const files = fields.get('label_file');
  if (files && !files.isNull) {
    for (const entry of readKeyValueFiles(files, context)) {
      const eq = entry.indexOf('=');
      labels.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
  }
  const given = fields.get('labels');
  if (given && !given.isNull) {
    if (given.kind === 'a map') {
      for (const { key, value } of given.entries()) labels.set(key, value.isNull ? '' : value.text());
    } else {
      for (const item of given.items()) {
        const entry = item.text('KEY=VALUE');
        const eq = entry.indexOf('=');
        labels.set(eq < 0 ? entry : entry.slice(0, eq), eq < 0 ? '' : entry.slice(eq + 1));
      }
    }
  }
  return labels.size > 0 ? Object.fromEntries(labels) : undefined;
}

/** extra_hosts: "HOST:IP" / "HOST=IP" entries, or a map of HOST to an address or a list of them. */
function readExtraHosts(value: YamlValue): { host: string; ip: string }[] {
  const entries =
    value.kind === 'a map'
      ? value
          .entries()
          .flatMap(({ key, value: ips }) =>
            ips.stringOrList().map((ip) => ({ text: `${key}=${ip}`, at: ips })),
          )
      : value.items().map((item) => ({ text: item.text('HOST:IP'), at: item }));
  return entries.map(({ text, at }) => {
    const parsed = parseHostEntry(text);
    if (typeof parsed === 'string') throw at.error(parsed);
    return parsed;
  });
}

/** Reads a key of `fields` that is there and not null; undefined otherwise. */
function fieldReader(fields: Map<string, YamlValue>) {
  return <T>(key: string, read: (field: YamlValue) => T): T | undefined => {
    const field = fields.get(key);
    return field && !field.isNull ? read(field) : undefined;
  };
}

/** sysctls, ulimits, shm_size, read_only, restart, capabilities and the domain name: set in the guest. */
function readGuestSettings(fields: Map<string, YamlValue>): GuestSettings | undefined {
  const get = fieldReader(fields);
  const settings: GuestSettings = definedOnly({
    domainname: get('domainname', (field) => field.string('a domain name')),
    sysctls: get('sysctls', readSysctls),
    ulimits: get('ulimits', readUlimits),
    restart: get('restart', readRestart),
    shmMiB: get('shm_size', (field) => field.attempt(() => parseShmMiB(field.text('a size such as 256m')))),
    readOnly: get('read_only', (field) => field.boolean() || undefined),
    capAdd: get('cap_add', readCapabilities),
    capDrop: get('cap_drop', readCapabilities),
    privileged: get('privileged', (field) => field.boolean() || undefined),
    groupAdd: get('group_add', readGroups),
  });
  return Object.keys(settings).length > 0 ? settings : undefined;
}

/** The fields post_start, pre_stop and pre_start steps share: command, user, working directory, privilege and environment. */
function readHookFields(
  item: YamlValue,
  context: Context,
): {
  hook: Omit<LifecycleHook, 'command'> & { command?: string[] };
  present: (key: string) => YamlValue | undefined;
} {
  const fields = new Map(item.entries().map(({ key, value: entry }) => [key, entry]));
  const present = (key: string): YamlValue | undefined => {
    const field = fields.get(key);
    return field && !field.isNull ? field : undefined;
  };
  const command = present('command');
  const user = present('user');
  const workdir = present('working_dir');
  const privileged = present('privileged');
  const environment = present('environment');
  const hook = definedOnly({
    command: command ? readWords(command) : undefined,
    user: user?.text(),
    privileged: privileged?.boolean() || undefined,
    workdir: workdir?.string('a directory'),
    env: environment ? readEnvironment(environment, context.variables) : undefined,
  });
  return { hook, present };
}

/** post_start and pre_stop: commands run in the container, each as an exec with its own user, directory and environment. */
function readHooks(value: YamlValue, context: Context): LifecycleHook[] | undefined {
  const hooks = value.items().map((item) => {
    const { command, ...rest } = readHookFields(item, context).hook;
    if (!command?.length) throw item.error('a hook needs a command');
    return { command, ...rest };
  });
  return hooks.length > 0 ? hooks : undefined;
}

/** pre_start: init containers, each with its own image, or the service's, and an optional command. */
function readPreStart(value: YamlValue, context: Context): PreStartStep[] | undefined {
  const steps = value.items().map((item) => {
    const { present, hook } = readHookFields(item, context);
    const image = present('image');
    const perReplica = present('per_replica');
    return definedOnly({
      image: image ? readImage(image) : undefined,
      ...hook,
      perReplica: perReplica?.boolean() || undefined,
    });
  });
  return steps.length > 0 ? steps : undefined;
}

/** pids_limit: a whole number of processes; 0 and -1 mean no limit, as under Docker. */
function readPidsLimit(value: YamlValue): number {
  const text = value.text('a number of processes');
  if (!/^-?\d+$/.test(text) || Number(text) < -1)
    throw value.error(`"${text}" is not a pids limit: give a whole number (-1 for none)`);
  return Number(text);
}

function withPidsLimit(
  settings: GuestSettings | undefined,
  limit: number | undefined,
): GuestSettings | undefined {
  if (limit === undefined || limit <= 0) return settings;
  return { ...settings, pidsLimit: limit };
}

/** group_add: group names in the image's /etc/group, or numbers. */
function readGroups(value: YamlValue): string[] | undefined {
  const groups = value.items().map((item) => {
    const group = item.text('a group name or number');
    if (!isGroupName(group)) throw item.error(`"${group}" is not a group name or number`);
    return group;
  });
  return groups.length > 0 ? groups : undefined;
}

function readSysctls(value: YamlValue): Record<string, string> {
  const entries =
    value.kind === 'a map'
      ? value.entries().map(({ key, value: entry }) => ({ key, text: entry.text('a value'), at: entry }))
      : value.items().map((item) => {
          const text = item.text('KEY=VALUE');
          const eq = text.indexOf('=');
          if (eq < 0) throw item.error(`"${text}" is not KEY=VALUE`);
          return { key: text.slice(0, eq).trim(), text: text.slice(eq + 1).trim(), at: item };
        });
  return Object.fromEntries(
    entries.map(({ key, text, at }) => {
      if (!isSysctlName(key)) throw at.error(`"${key}" is not a sysctl name such as net.core.somaxconn`);
      if (/[\n\0]/.test(text)) throw at.error(`the value of ${key} must be one line`);
      return [key, text];
    }),
  );
}

function readUlimits(value: YamlValue): Record<string, { soft: number; hard: number }> {
  return Object.fromEntries(
    value.entries().map(({ key, value: limit }) => {
      if (!ULIMITS.includes(key))
        throw limit.error(`"${key}" is not a ulimit; use one of ${ULIMITS.join(', ')}`);
      const number = (field: YamlValue): number => {
        const text = field.text('a number');
        if (!/^(-1|\d+)$/.test(text))
          throw field.error(`"${text}" is not a whole number (or -1 for unlimited)`);
        return Number(text);
      };
      if (limit.kind !== 'a map') {
        const both = number(limit);
        return [key, { soft: both, hard: both }];
      }
      const pair = new Map(limit.entries().map((entry) => [entry.key, entry.value]));
      const soft = pair.get('soft');
      const hard = pair.get('hard');
      if (!soft || !hard) throw limit.error('give both soft and hard');
      const limits = { soft: number(soft), hard: number(hard) };
      const unlimited = (n: number): number => (n === -1 ? Number.POSITIVE_INFINITY : n);
      if (unlimited(limits.soft) > unlimited(limits.hard))
        throw limit.error(`the soft limit ${limits.soft} is above the hard limit ${limits.hard}`);
      return [key, limits];
    }),
  );
}

/** Capability names as Docker takes them: CHOWN or CAP_CHOWN, any case, or ALL. */
function readCapabilities(value: YamlValue): string[] {
  return value.items().map((item) => {
    const name = capabilityName(item.string('a capability such as NET_ADMIN'));
    if (name !== 'ALL' && !(name in CAPABILITIES))
      throw item.error(
        `"${name}" is not a capability; use one of ${Object.keys(CAPABILITIES).join(', ')}, or ALL`,
      );
    return name;
  });
}

/** A service's secrets and configs: the files they put into the guest. */
function readGrants(
  fields: Map<string, YamlValue>,
  grants: { secrets: Sources; configs: Sources },
): ServiceFile[] | undefined {
  const files = [
    ...readGrantList(fields.get('secrets'), grants.secrets, 'secret', (source) => `/run/secrets/${source}`),
    ...readGrantList(fields.get('configs'), grants.configs, 'config', (source) => `/${source}`),
  ];
  return files.length > 0 ? files : undefined;
}

function readGrantList(
  value: YamlValue | undefined,
  sources: Sources,
  kind: 'secret' | 'config',
  defaultTarget: (source: string) => string,
): ServiceFile[] {
  if (!value || value.isNull) return [];
  return value.items().map((item) => {
    const fields =
      item.kind === 'a map' ? new Map(item.entries().map(({ key, value: v }) => [key, v])) : undefined;
    for (const key of fields?.keys() ?? [])
      if (!(key in FILE_GRANT_KEYS) && !key.startsWith('x-')) throw item.error(`${key} is not a known key`);
    const sourceValue = fields ? fields.get('source') : item;
    if (!sourceValue) throw item.error('source is missing; give the name of a top-level ' + kind);
    const source = sourceValue.string(`the name of a ${kind}`);
    const content = sources.get(source);
    if (content === undefined)
      throw sourceValue.error(`${kind} "${source}" is not declared under the top-level ${kind}s:`);
    const targetValue = fields?.get('target');
    const given = targetValue?.string('a path');
    const target =
      given === undefined
        ? defaultTarget(source)
        : path.posix.isAbsolute(given)
          ? path.posix.normalize(given)
          : kind === 'secret'
            ? `/run/secrets/${given}`
            : `/${given}`;
    if (target.split('/').includes('..') || target === '/')
      throw (targetValue ?? item).error(`"${target}" is not a file path in the container`);
    const id = (key: 'uid' | 'gid'): number => {
      const field = fields?.get(key);
      return field ? field.attempt(() => parseCount(field.text('a numeric id'), 0)) : 0;
    };
    const modeValue = fields?.get('mode');
    const mode = modeValue ? readMode(modeValue) : 0o444;
    return { target, content, uid: id('uid'), gid: id('gid'), mode };
  });
}

/** A file mode: octal as written (0440, 0o440, or a string "440"), or a plain decimal number (288). */
function readMode(value: YamlValue): number {
  const text = value.text('a mode such as 0440');
  const octal = /^0o?([0-7]+)$/i.exec(text) ?? (value.kind === 'a string' ? /^([0-7]+)$/.exec(text) : null);
  const mode = octal ? parseInt(octal[1] ?? '', 8) : /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(mode) || mode > 0o7777)
    throw value.error(`"${text}" is not a file mode such as 0440`);
  return mode;
}

/** `environment:` as a map or a list of KEY=VALUE; a bare KEY comes from `variables`. */
function readEnvironment(value: YamlValue, variables: VariableMap): string[] {
  if (value.kind === 'a map') return readEnvMap(value, variables);
  if (value.kind !== 'a list') throw value.expected('a map or a list of KEY=VALUE');
  return value.items().flatMap((item) => {
    const entry = item.text('KEY=VALUE');
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    checkEnvName(key, item);
    if (eq >= 0) return [entry];
    const host = variables[key];
    return host === undefined ? [] : [`${key}=${host}`];
  });
}

/** env_file and label_file: files of KEY=VALUE lines, in order; a missing one that is not required is skipped. */
function readKeyValueFiles(value: YamlValue, context: Context): string[] {
  const items = value.kind === 'a list' ? value.items() : [value];
  return items.flatMap((item) => {
    let file = item;
    let required = true;
    if (item.kind === 'a map') {
      const fields = new Map(item.entries().map((entry) => [entry.key, entry.value]));
      const given = fields.get('path');
      if (!given) throw item.error('path is missing');
      file = given;
      required = fields.get('required')?.boolean() ?? true;
      const format = fields.get('format');
      if (format && format.string() !== 'raw')
        throw format.error(`"${format.string()}" is not a format hyper-services reads; leave it out`);
    }
    const name = file.string('a path to a file of KEY=VALUE lines');
    const resolved = resolvePath(name, context);
    let text: string;
    try {
      text = context.readFile(resolved).toString();
    } catch (error: unknown) {
      if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw file.error(`cannot read ${resolved}: ${(error as Error).message}`);
    }
    return file.attempt(() => parseEnvFile(text, name, context.variables));
  });
}

/** `depends_on:` as a list of names, or a map of name to { condition, required, restart }. */
function readDependsOn(
  value: YamlValue,
  context: Context,
): { service: string; condition: DependencyCondition; required: boolean }[] {
  if (value.kind === 'a list') {
    return value.items().map((item) => ({
      service: item.string('a service id'),
      condition: 'service_started' as const,
      required: true,
    }));
  }
  return value.entries().map(({ key, value: entry }) => {
    if (entry.isNull) return { service: key, condition: 'service_started' as const, required: true };
    const fields = answered(entry, DEPENDS_ON_KEYS, context.warnings);
    const condition = fields.get('condition');
    return {
      service: key,
      condition: condition ? readCondition(condition) : 'service_started',
      required: fields.get('required')?.boolean() ?? true,
    };
  });
}

/** The long port syntax, written back as the short one for parsePortSpec. */
function readLongPort(value: YamlValue, context: Context): string {
  const fields = answered(value, PORT_KEYS, context.warnings);
  const target = fields.get('target')?.text();
  if (target === undefined) throw value.error('target is missing; give the container port');
  const published = fields.get('published')?.text() ?? '';
  const hostIp = fields.get('host_ip')?.string();
  const protocol = fields.get('protocol')?.string();
  const host = hostIp?.includes(':') ? `[${hostIp}]` : hostIp;
  const mapping =
    host !== undefined ? `${host}:${published}:${target}` : published ? `${published}:${target}` : target;
  return protocol ? `${mapping}/${protocol}` : mapping;
}

const VOLUME_TYPES = ['volume', 'bind', 'tmpfs', 'image'];

/** Short volume strings as written; the long syntax as "SOURCE:TARGET[:ro]", or a tmpfs path. */
function readVolumes(
  value: YamlValue,
  context: Context,
): { volumes: string[]; tmpfs: string[]; images: ImageMount[] } {
  const volumes: string[] = [];
  const tmpfs: string[] = [];
  const images: ImageMount[] = [];
  for (const item of value.items()) {
    if (item.kind !== 'a map') {
      volumes.push(item.string('a volume such as ./data:/data, or a map with type, source and target'));
      continue;
    }
    const fields = answered(item, VOLUME_MOUNT_KEYS, context.warnings);
    const type = fields.get('type')?.string();
    if (type === undefined || !VOLUME_TYPES.includes(type)) {
      throw item.error(
        `type is ${type === undefined ? 'missing' : `"${type}"`}; use volume, bind, tmpfs or image`,
      );
    }
    const target = fields.get('target')?.string();
    if (target === undefined) throw item.error('target is missing; give the path in the container');
    const source = fields.get('source');
    const mode = fields.get('read_only')?.boolean() ? ':ro' : '';
    if (type === 'image') {
      images.push(readImageMount(item, fields, target));
      continue;
    }
    const imageOptions = fields.get('image');
    if (imageOptions && !imageOptions.isNull)
      throw imageOptions.error(`image options are for type: image, and this volume is type: ${type}`);
    if (type === 'tmpfs') {
      if (source) throw source.error('a tmpfs has no source');
      tmpfs.push(`${target}${mode}`);
    } else if (source) {
      volumes.push(`${source.string()}:${target}${mode}`);
    } else if (type === 'bind') {
      throw item.error('source is missing; a bind mount needs the host path');
    } else {
      volumes.push(`${target}${mode}`);
    }
  }
  return { volumes, tmpfs, images };
}

/** A `type: image` volume: an image reference as the source, and optionally `image: { subpath }`. */
function readImageMount(item: YamlValue, fields: Map<string, YamlValue>, target: string): ImageMount {
  const source = fields.get('source');
  if (!source || source.isNull)
    throw item.error('source is missing; an image volume needs the image to mount');
  const readOnly = fields.get('read_only');
  if (readOnly && !readOnly.isNull && !readOnly.boolean())
    throw readOnly.error("an image volume is always read-only: an image's filesystem is not written");
  if (!target.startsWith('/') || /\s/.test(target) || target.split('/').includes('..'))
    throw (fields.get('target') as YamlValue).error(
      `"${target}" must be an absolute path in the container, without whitespace or ".."`,
    );
  const options = fields.get('image');
  const subpathField = options && !options.isNull ? options.fields(['subpath']).get('subpath') : undefined;
  const subpath =
    subpathField && !subpathField.isNull ? subpathField.string('a path inside the image') : undefined;
  if (subpath !== undefined) {
    const clean = path.posix.normalize(subpath).replace(/^\/+|\/+$/g, '');
    if (path.posix.isAbsolute(subpath) || clean === '..' || clean.startsWith('../') || /\s/.test(subpath))
      throw (subpathField as YamlValue).error(
        `subpath "${subpath}" must be a relative path inside the image, without whitespace or ".."`,
      );
    if (clean !== '' && clean !== '.') return { image: readImage(source), target, subpath: clean };
  }
  return { image: readImage(source), target };
}

/**
 * The top-level volumes, by name, each with the size its `driver_opts: { size }`
 * sets (Docker's `--opt size=`), if any. Their other settings are answered by the table.
 */
function readVolumeDeclarations(value: YamlValue, warnings: string[]): Map<string, number | undefined> {
  const volumes = new Map<string, number | undefined>();
  for (const { key, value: volume } of value.entries()) {
    if (key.startsWith('x-')) continue;
    const options = volume.isNull ? undefined : answered(volume, VOLUME_KEYS, warnings).get('driver_opts');
    volumes.set(key, options && !options.isNull ? readVolumeSize(options) : undefined);
  }
  return volumes;
}

/** A volume's `driver_opts`: size is the only one a volume disk can honour. */
function readVolumeSize(options: YamlValue): number | undefined {
  const size = options.fields(['size']).get('size');
  if (!size) return undefined;
  const text = size.text('a size such as 2G');
  return size.attempt(() => parseVolumeSize(text));
}

/**
 * Top-level networks: names, each with at most `driver: bridge` and an ipam
 * subnet. All of a job's services share one network, so one subnet at most.
 */
function readTopNetworks(value: YamlValue, warnings: string[]): string | undefined {
  const subnets: string[] = [];
  for (const { key, value: network } of value.entries()) {
    if (network.isNull || key.startsWith('x-')) continue;
    const fields = answered(network, NETWORK_KEYS, warnings);
    const driver = fields.get('driver');
    if (driver && driver.string('a driver name') !== 'bridge') throw driver.error(ONE_NETWORK);
    const ipam = fields.get('ipam');
    if (!ipam || ipam.isNull) continue;
    const config = ipam.fields(['driver', 'config']).get('config');
    for (const entry of config?.items() ?? []) {
      const subnet = entry.fields(['subnet']).get('subnet');
      if (subnet) subnets.push(subnet.string('a subnet such as 10.20.0.0/24'));
    }
  }
  if (subnets.length > 1)
    throw value.error(`only one subnet can be given (${subnets.join(', ')}): ${ONE_NETWORK}`);
  return subnets[0];
}

/** A service's networks: names, or a map of name to null or `{ aliases: [...] }`; returns the aliases. */
function readServiceNetworks(value: YamlValue, context: Context): string[] {
  if (value.kind === 'a list') {
    for (const item of value.items()) item.string('a network name');
    return [];
  }
  const aliases: string[] = [];
  for (const { value: network } of value.entries()) {
    if (network.isNull) continue;
    const list = answered(network, SERVICE_NETWORK_KEYS, context.warnings).get('aliases');
    if (list) aliases.push(...list.items().map((item) => item.string('an alias')));
  }
  return aliases;
}

/** `expose:` ports: "3000", "3000/tcp" or 3000; TCP only (services reach each other over TCP). */
function readExpose(value: YamlValue): number[] {
  return value.items().map((item) => {
    const text = item.text('a port such as 3000');
    const match = /^(\d{1,5})(\/tcp)?$/.exec(text);
    const port = Number(match?.[1]);
    if (!match || port < 1 || port > 65535)
      throw item.error(`"${text}" is not a TCP port (PORT or PORT/tcp)`);
    return port;
  });
}
