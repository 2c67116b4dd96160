import path from 'node:path';
import { parseEnvFile } from './env-file.js';
import {
  checkEnvName,
  definedOnly,
  readCpus,
  readDependsOn,
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
import { SpecError, type ContainerSpec } from './container.js';
import { parseVolumeSize } from './units.js';
import { parseYaml, type YamlValue } from './yaml-value.js';

/** Reads a file named in the compose file (env_file), by a path already joined to the file's directory. */
export type ReadFile = (path: string) => string;

export interface ComposeProject {
  services: ContainerSpec[];
  /** The top-level named volumes, for when volumes are set up. */
  volumes: string[];
  /** The job network's subnet, from a top-level network's `ipam: { config: [{ subnet }] }`. */
  subnet?: string;
}

const TOP_KEYS = ['services', 'version', 'name', 'volumes', 'networks'];
const SERVICE_KEYS = [
  'image',
  'environment',
  'env_file',
  'ports',
  'volumes',
  'command',
  'entrypoint',
  'healthcheck',
  'depends_on',
  'working_dir',
  'user',
  'tmpfs',
  'mem_limit',
  'cpus',
  'container_name',
  'networks',
  'expose',
];
const BUILD = 'images must come from a registry; hyper-services does not build images (use image:)';
const ONE_NETWORK =
  'every service of a job shares one network; of the network settings only driver: bridge, ipam subnet and aliases are supported';

/** The services of a compose file. See parseComposeProject. */
export function parseComposeFile(
  text: string,
  file: string,
  readFile: ReadFile,
  variables: VariableMap = {},
): ContainerSpec[] {
  return parseComposeProject(text, file, readFile, variables).services;
}

/**
 * A subset of the Compose spec: the keys hyper-services can honour, each
 * checked, and a message naming any other. `${VAR}` in values is taken from
 * `variables`; env_file paths are relative to `file`'s directory. Pure but for `readFile`.
 */
export function parseComposeProject(
  text: string,
  file: string,
  readFile: ReadFile,
  variables: VariableMap = {},
): ComposeProject {
  const root = parseYaml(text, file, '', (value) => interpolate(value, variables));
  if (root.isNull) throw root.error('the file is empty; a compose file needs a services: map');
  const top = composeFields(root, TOP_KEYS);
  const services = top.get('services');
  if (!services) throw root.error('services: is missing; a compose file needs a services: map');
  const networks = top.get('networks');
  const subnet = networks && !networks.isNull ? readTopNetworks(networks) : undefined;
  const volumes = top.get('volumes');
  const declared =
    volumes && !volumes.isNull ? readVolumeDeclarations(volumes) : new Map<string, number | undefined>();
  const context = { dir: path.dirname(file), readFile, variables };
  const project = {
    services: services
      .entries()
      .map(({ key, value }) => parseService(readServiceName(key, value), value, context))
      .map((service) => withVolumeSizes(service, declared)),
    volumes: [...declared.keys()],
    ...(subnet ? { subnet } : {}),
  };
  checkDeclaredVolumes(project, file);
  return project;
}

/** As Compose: a named volume a service uses must be declared under the top-level volumes:. */
function checkDeclaredVolumes(project: ComposeProject, file: string): void {
  for (const service of project.services) {
    for (const volume of service.volumes) {
      const name = namedVolume(volume);
      if (name !== undefined && !project.volumes.includes(name)) {
        throw new SpecError(
          `${file}: service "${service.name}" uses volume "${name}", which is not declared under the top-level volumes:`,
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

/** The keys of a map, `x-` extension keys left out, as Compose does. */
function composeFields(value: YamlValue, valid: readonly string[]): Map<string, YamlValue> {
  const fields = new Map<string, YamlValue>();
  for (const { key, value: field } of value.entries()) {
    if (key.startsWith('x-')) continue;
    if (!valid.includes(key)) throw field.unknownKey(valid);
    fields.set(key, field);
  }
  return fields;
}

interface Context {
  dir: string;
  readFile: ReadFile;
  variables: VariableMap;
}

function parseService(name: string, value: YamlValue, context: Context): ContainerSpec {
  if (value.kind !== 'a map') throw value.expected('a map with at least image:');
  const build = value.entries().find((entry) => entry.key === 'build');
  if (build) throw build.value.error(BUILD);
  const fields = composeFields(value, SERVICE_KEYS);
  const image = fields.get('image');
  if (!image) throw value.error(`service "${name}" has no image; add image: NAME[:TAG]`);
  const get = <T>(key: string, read: (field: YamlValue) => T): T | undefined => {
    const field = fields.get(key);
    return field && read(field);
  };
  const mounts = get('volumes', readVolumes) ?? { volumes: [], tmpfs: [] };
  const aliases = get('networks', readServiceNetworks);
  return definedOnly({
    name,
    image: readImage(image),
    env: [
      ...(get('env_file', (field) => readEnvFiles(field, context)) ?? []),
      ...(get('environment', (field) => readEnvironment(field, context.variables)) ?? []),
    ],
    ports: get('ports', (field) => readPorts(field, readLongPort)) ?? [],
    volumes: mounts.volumes,
    baseDir: context.dir,
    command: get('command', readWords),
    entrypoint: get('entrypoint', readWords),
    healthcheck: get('healthcheck', readHealthcheck),
    memoryMiB: get('mem_limit', readMemory),
    cpus: get('cpus', readCpus),
    dependsOn: get('depends_on', readDependsOn) ?? [],
    workdir: get('working_dir', (field) => field.string()),
    user: get('user', (field) => field.text()),
    tmpfs: [...(get('tmpfs', (field) => field.stringOrList()) ?? []), ...mounts.tmpfs],
    aliases,
    expose: get('expose', readExpose),
  });
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

/** `env_file:` as a path, a list of paths, or a list of { path, required }. */
function readEnvFiles(value: YamlValue, context: Context): string[] {
  const items = value.kind === 'a list' ? value.items() : [value];
  return items.flatMap((item) => {
    let file = item;
    let required = true;
    if (item.kind === 'a map') {
      const fields = item.fields(['path', 'required']);
      const given = fields.get('path');
      if (!given) throw item.error('path is missing');
      file = given;
      required = fields.get('required')?.boolean() ?? true;
    }
    const name = file.string('a path to a file of KEY=VALUE lines');
    const resolved = path.isAbsolute(name) ? name : path.join(context.dir, name);
    let text: string;
    try {
      text = context.readFile(resolved);
    } catch (error: unknown) {
      if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw file.error(`cannot read ${resolved}: ${(error as Error).message}`);
    }
    return file.attempt(() => parseEnvFile(text, name, context.variables));
  });
}

/** The long port syntax, written back as the short one for parsePortSpec. */
function readLongPort(value: YamlValue): string {
  const fields = value.fields(['target', 'published', 'host_ip', 'protocol']);
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

const VOLUME_TYPES = ['volume', 'bind', 'tmpfs'];

/** Short volume strings as written; the long syntax as "SOURCE:TARGET[:ro]", or a tmpfs path. */
function readVolumes(value: YamlValue): { volumes: string[]; tmpfs: string[] } {
  const volumes: string[] = [];
  const tmpfs: string[] = [];
  for (const item of value.items()) {
    if (item.kind !== 'a map') {
      volumes.push(item.string('a volume such as ./data:/data, or a map with type, source and target'));
      continue;
    }
    const fields = item.fields(['type', 'source', 'target', 'read_only']);
    const type = fields.get('type')?.string();
    if (type === undefined || !VOLUME_TYPES.includes(type)) {
      throw item.error(`type is ${type === undefined ? 'missing' : `"${type}"`}; use volume, bind or tmpfs`);
    }
    const target = fields.get('target')?.string();
    if (target === undefined) throw item.error('target is missing; give the path in the container');
    const source = fields.get('source');
    const mode = fields.get('read_only')?.boolean() ? ':ro' : '';
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
  return { volumes, tmpfs };
}

/**
 * The top-level volumes, by name, each with the size its `driver_opts: { size }`
 * sets (Docker's `--opt size=`), if any. Their other settings are not acted on.
 */
function readVolumeDeclarations(value: YamlValue): Map<string, number | undefined> {
  const volumes = new Map<string, number | undefined>();
  for (const { key, value: volume } of value.entries()) {
    if (!volume.isNull && volume.kind !== 'a map') throw volume.expected('a map of volume settings');
    const options = volume.isNull ? undefined : volume.entries().find((entry) => entry.key === 'driver_opts');
    volumes.set(key, options && !options.value.isNull ? readVolumeSize(options.value) : undefined);
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
function readTopNetworks(value: YamlValue): string | undefined {
  const subnets: string[] = [];
  for (const { value: network } of value.entries()) {
    if (network.isNull) continue;
    const fields = network.fields(['driver', 'ipam']);
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
function readServiceNetworks(value: YamlValue): string[] {
  if (value.kind === 'a list') {
    for (const item of value.items()) item.string('a network name');
    return [];
  }
  const aliases: string[] = [];
  for (const { value: network } of value.entries()) {
    if (network.isNull) continue;
    const list = network.fields(['aliases']).get('aliases');
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
