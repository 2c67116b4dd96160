import { parseDockerOptions, type DockerOptions } from './docker-options.js';
import {
  definedOnly,
  readCpus,
  readDependsOn,
  readEnvMap,
  readHealthcheck,
  readImage,
  readMemory,
  readPorts,
  readServiceName,
  readStringList,
  readWords,
} from './fields.js';
import type { ContainerSpec } from './container.js';
import { parseYaml, type YamlValue } from './yaml-value.js';

const KEYS = [
  'image',
  'credentials',
  'env',
  'ports',
  'volumes',
  'options',
  'command',
  'entrypoint',
  'healthcheck',
  'memory',
  'cpus',
  'depends-on',
];

/**
 * The action's `services` input: the shape of GitHub's `jobs.<id>.services`
 * (image, credentials, env, ports, volumes, options), plus command, entrypoint,
 * healthcheck, memory, cpus and depends-on. `options` is parsed, not passed on. Pure.
 */
export function parseServicesInput(text: string, source = 'input "services"'): ContainerSpec[] {
  const root = parseYaml(text, source, 'services');
  if (root.isNull) return [];
  return root.entries().map(({ key, value }) => parseService(readServiceName(key, value), value));
}

function parseService(name: string, value: YamlValue): ContainerSpec {
  if (value.kind !== 'a map') throw value.expected('a map with at least image:');
  const fields = value.fields(KEYS);
  const image = fields.get('image');
  if (!image) throw value.error(`service "${name}" has no image; add image: NAME[:TAG]`);
  const optionsValue = fields.get('options');
  const options = optionsValue
    ? readOptions(optionsValue, name)
    : { env: [], tmpfs: [], aliases: [], expose: [] };
  const field = <T>(key: string, read: (v: YamlValue) => T, option: T | undefined, flag: string) => {
    const given = fields.get(key);
    if (given && option !== undefined)
      throw given.error(`also set by ${flag} in options; set it in one place`);
    return given ? read(given) : option;
  };
  const env = fields.get('env');
  const ports = fields.get('ports');
  const volumes = fields.get('volumes');
  const command = fields.get('command');
  const credentials = fields.get('credentials');
  const dependsOn = fields.get('depends-on');
  return definedOnly({
    name,
    image: readImage(image),
    credentials: credentials && readCredentials(credentials),
    // GitHub passes options before the env map's -e flags, so the map wins.
    env: [...options.env, ...(env ? readEnvMap(env) : [])],
    ports: ports ? readPorts(ports) : [],
    volumes: volumes ? readStringList(volumes) : [],
    command: command && readWords(command),
    entrypoint: field('entrypoint', readWords, options.entrypoint, '--entrypoint'),
    healthcheck: field('healthcheck', readHealthcheck, options.healthcheck, '--health-* or --no-healthcheck'),
    memoryMiB: field('memory', readMemory, options.memoryMiB, '--memory'),
    cpus: field('cpus', readCpus, options.cpus, '--cpus'),
    dependsOn: dependsOn ? readDependsOn(dependsOn) : [],
    workdir: options.workdir,
    user: options.user,
    tmpfs: options.tmpfs,
    aliases: options.aliases.length ? options.aliases : undefined,
    expose: options.expose.length ? options.expose : undefined,
  });
}

function readOptions(value: YamlValue, name: string): DockerOptions {
  const text = value.string('a string of docker create options');
  const options = value.attempt(() => parseDockerOptions(text));
  if (options.name !== undefined && options.name !== name) {
    throw value.error(
      `--name ${JSON.stringify(options.name)} differs from the service id "${name}"; the id is the name, so drop --name`,
    );
  }
  return options;
}

function readCredentials(value: YamlValue): { username: string; password: string } {
  const fields = value.fields(['username', 'password']);
  const read = (key: string): string => {
    const field = fields.get(key);
    if (!field) throw value.error(`${key} is missing; credentials need username and password`);
    return field.text();
  };
  return { username: read('username'), password: read('password') };
}
