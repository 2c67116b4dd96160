import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { HyperError, type ErrorKind } from '../errors.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { GuestSettings, ServiceFile } from '../guest/config.js';
import type { PortSpec } from '../network/ports.js';

export { healthcheck, type HealthcheckSpec } from '../images/run-config.js';
export type { GuestSettings, RestartPolicy, ServiceFile } from '../guest/config.js';

export type DependencyCondition = 'service_started' | 'service_healthy';

/**
 * One container, whichever front door it came through (services YAML, a
 * compose file, `hyper run` flags): typed, validated, ready to plan. What it
 * leaves out, CONTAINER_DEFAULTS or the image gives.
 */
export interface ContainerSpec {
  /** The service id (the YAML key, or --name); also its hostname. */
  name: string;
  image: string;
  credentials?: { username: string; password: string };
  /** "K=V", in order; a later entry for the same K wins. */
  env: string[];
  ports: PortSpec[];
  /** Docker short syntax, as written (src/storage/mounts.ts parses them). */
  volumes: string[];
  /** Images whose filesystem is mounted read-only into the container (compose `type: image` volumes). */
  imageMounts?: ImageMount[];
  /** Bytes for the named volumes in `volumes` that set a size (compose `driver_opts: { size }`), by name. */
  volumeSizes?: Record<string, number>;
  /** What relative host paths in `volumes` are relative to: the compose file's directory; else the caller's. */
  baseDir?: string;
  /** Replaces the image's Cmd. */
  command?: string[];
  /** Replaces the image's Entrypoint; [] clears it. */
  entrypoint?: string[];
  /** undefined: the image's own HEALTHCHECK. */
  healthcheck?: HealthcheckSpec | 'none';
  memoryMiB?: number;
  /** Whole vCPUs. */
  cpus?: number;
  dependsOn: { service: string; condition: DependencyCondition }[];
  workdir?: string;
  user?: string;
  /** Container paths to mount as tmpfs. */
  tmpfs: string[];
  /** Further names the other services reach this one by (compose `networks: {x: {aliases}}`, `--network-alias`). */
  aliases?: string[];
  /** Container ports the other services may reach besides the image's EXPOSE and `ports` (compose `expose:`). */
  expose?: number[];
  /** Owner labels kept on the VM, e.g. the compose file or job that made it. */
  labels?: Record<string, string>;
  /** A bind source that does not exist is made as an empty directory, as Docker's `-v` does; else it is an error. */
  createBindSources?: boolean;
  /** Further /etc/hosts entries (docker --add-host). */
  extraHosts?: { host: string; ip: string }[];
  /** Replaces the image's STOPSIGNAL. */
  stopSignal?: string;
  /** The container's hostname, when not its name (compose `hostname:`). */
  hostname?: string;
  /** How long a stop waits after the stop signal before it kills the VM; else the caller's. */
  stopGraceMs?: number;
  /** What the guest sets up around the service beyond Docker's defaults. */
  guest?: GuestSettings;
  /** Files put into the container before it starts (compose secrets and configs). */
  files?: ServiceFile[];
  /**
   * Paths in the container where the Docker API that made it is served (the
   * Docker socket bound in, as the runner and Testcontainers' Ryuk do); only
   * `hyper serve` has an API to serve there.
   */
  apiSockets?: string[];
  /**
   * How many VMs of this service to run (compose deploy.replicas, scale,
   * `hyper up --scale`), named NAME.1 to NAME.N; undefined is one, named NAME.
   */
  replicas?: number;
  /**
   * Init containers (compose pre_start): each a one-shot VM on the service's
   * mounts and network, run to completion in order before the service boots.
   */
  preStart?: PreStartStep[];
  /** Run in the container once it has started (compose post_start); one that fails stops it. */
  postStart?: LifecycleHook[];
  /** Run in the container before its stop signal (compose pre_stop). */
  preStop?: LifecycleHook[];
  /** The service this VM is one replica of (set by replicaSpecs); its name is then SERVICE.N. */
  replicaOf?: string;
  /** Compose's container_name: a name for one container, so never with replicas (it is in aliases too). */
  containerName?: string;
}

/** An image's filesystem, or one directory of it, mounted read-only at `target` (compose `type: image`). */
export interface ImageMount {
  image: string;
  target: string;
  /** A relative path inside the image to mount instead of its root. */
  subpath?: string;
}

/** A compose lifecycle hook (post_start, pre_stop): a command run in the service's container, as an exec. */
export interface LifecycleHook {
  command: string[];
  /** Else the service's user. */
  user?: string;
  /** With every capability, as a privileged exec. */
  privileged?: boolean;
  /** Else the service's working directory. */
  workdir?: string;
  /** "K=V" over the service's environment. */
  env?: string[];
}

/** One compose pre_start step: a VM of its own, run to completion before the service starts. */
export interface PreStartStep {
  /** Else the service's image (and then the service's user too). */
  image?: string;
  /** Replaces the image's Cmd; its entrypoint stays. */
  command?: string[];
  user?: string;
  /** With every capability. */
  privileged?: boolean;
  /** Else the service's working directory. */
  workdir?: string;
  /** "K=V" over the service's environment. */
  env?: string[];
  /** Run once per replica, before that replica; else once for the service, before any replica. */
  perReplica?: boolean;
}

/** The one place a container's defaults live. */
export const CONTAINER_DEFAULTS = { memoryMiB: 512, cpus: 1 } as const;

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** Docker's container name rule (it also names a directory and a hostname). */
export function validateName(name: string): void {
  if (!NAME.test(name)) {
    throw new SpecError(
      `"${name}" is not a valid name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)`,
    );
  }
}

/** `oci:/x/busybox-httpd:latest` -> `busybox-httpd-3f9a`. */
export function generateName(image: string): string {
  const base =
    image
      .replace(/^oci:/, '')
      .replace(/[:@].*$/, '')
      .split('/')
      .filter(Boolean)
      .pop() ?? 'vm';
  const clean =
    base
      .replace(/[^a-zA-Z0-9_.-]/g, '-')
      .replace(/^[^a-zA-Z0-9]+/, '')
      .slice(0, 50) || 'vm';
  return `${clean}-${randomBytes(2).toString('hex')}`;
}

/** A bad services input or compose file; the message names the source, key path and line where known. */
export class SpecError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'SpecError';
}

// A partial override would need the image's HEALTHCHECK, which is not known until it is pulled.
export const PARTIAL_HEALTHCHECK =
  "changing only part of the image's HEALTHCHECK is not supported; give the test as well";

/**
 * An extra /etc/hosts entry, "HOST:IP" or "HOST=IP" as `--add-host` and
 * compose's extra_hosts take it (an IPv6 address may be in brackets); else
 * what is wrong with it. Pure.
 */
export function parseHostEntry(entry: string): { host: string; ip: string } | string {
  const match = /^([^:=\s]+)[:=](\S+)$/.exec(entry);
  const ip = (match?.[2] ?? '').replace(/^\[|\]$/g, '');
  if (!match || !net.isIP(ip)) {
    const gateway =
      match?.[2] === 'host-gateway' ? ' (host-gateway would reach this host, which guests never do)' : '';
    return `"${entry}" is not HOST:IP${gateway}`;
  }
  return { host: match[1] as string, ip };
}

const HOST_LABEL = '[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?';
const HOSTNAME = new RegExp(`^(?=.{1,63}$)${HOST_LABEL}(\\.${HOST_LABEL})*$`);

/** A hostname the guest kernel takes: dot-separated labels of letters, digits and "-", at most 63 in all. Pure. */
export function isHostname(name: string): boolean {
  return HOSTNAME.test(name);
}
