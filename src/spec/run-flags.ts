import { parsePortSpec } from '../network/ports.js';
import { generateName, SpecError, type ContainerSpec } from './container.js';

/** `hyper run`'s flags as given, before any meaning is read into them. */
export interface RunFlags {
  image: string;
  command: string[];
  name?: string | undefined;
  publish: string[];
  /** K=V, or K alone (filled from `environment` as docker run does). */
  env: string[];
  memoryMiB?: number | undefined;
  cpus?: number | undefined;
  entrypoint?: string | undefined;
  user?: string | undefined;
  workdir?: string | undefined;
  volumes: string[];
  tmpfs: string[];
  aliases: string[];
  expose: string[];
  /** What relative host paths are relative to: the working directory. */
  baseDir: string;
  labels?: Record<string, string>;
}

/** The container `hyper run` asks for; `environment` fills `-e K` entries. Pure but for the generated name. */
export function containerFromRunFlags(
  flags: RunFlags,
  environment: Readonly<Record<string, string | undefined>>,
): ContainerSpec {
  return {
    name: flags.name ?? generateName(flags.image),
    image: flags.image,
    env: flags.env.map((entry) => (entry.includes('=') ? entry : `${entry}=${environment[entry] ?? ''}`)),
    ports: flags.publish.map((text) => parsePortSpec(text)),
    volumes: flags.volumes,
    tmpfs: flags.tmpfs,
    baseDir: flags.baseDir,
    command: flags.command,
    ...(flags.entrypoint === undefined ? {} : { entrypoint: [flags.entrypoint] }),
    ...(flags.memoryMiB === undefined ? {} : { memoryMiB: flags.memoryMiB }),
    ...(flags.cpus === undefined ? {} : { cpus: flags.cpus }),
    ...(flags.user === undefined ? {} : { user: flags.user }),
    ...(flags.workdir === undefined ? {} : { workdir: flags.workdir }),
    dependsOn: [],
    aliases: flags.aliases,
    expose: flags.expose.map(exposedPort),
    ...(flags.labels ? { labels: flags.labels } : {}),
  };
}

/** `--expose 5432` or `5432/tcp`: a container port the job's other services may reach. */
export function exposedPort(text: string): number {
  const match = /^(\d{1,5})(\/tcp)?$/.exec(text.trim());
  const port = Number(match?.[1]);
  if (!match || port < 1 || port > 65535)
    throw new SpecError(`--expose ${text}: give a TCP port number from 1 to 65535 (PORT or PORT/tcp)`);
  return port;
}
