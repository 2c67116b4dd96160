/**
 * What hyper-services does with every key of the Compose Specification: one
 * of four answers per key, and why. The compose parser acts on it (a warning
 * for an ignored key, an error for a refused one) and docs/compose.md shows
 * it; a unit test checks that it answers exactly the keys the specification's
 * schema (compose-schema.ts) has.
 */

/**
 * - honoured: as under `docker compose`;
 * - vm: honoured, with the meaning it has for a service that is a VM;
 * - ignored: accepted, with one warning line saying why;
 * - refused: an error saying why.
 */
export type KeyAnswer = 'honoured' | 'vm' | 'ignored' | 'refused';

export interface KeyRule {
  answer: KeyAnswer;
  /** For vm, what the key does here; for ignored and refused, why. */
  why?: string;
  /**
   * Values that ask for what every service VM is anyway (`ipc: private`),
   * accepted without a word although the key is refused for the others.
   */
  harmless?: readonly string[];
}

const honoured = (why?: string): KeyRule => ({ answer: 'honoured', ...(why ? { why } : {}) });
const vm = (why: string): KeyRule => ({ answer: 'vm', why });
const ignored = (why: string): KeyRule => ({ answer: 'ignored', why });
const refused = (why: string, harmless?: readonly string[]): KeyRule => ({
  answer: 'refused',
  why,
  ...(harmless ? { harmless } : {}),
});

const HOST_NAMESPACE =
  "sharing the host's namespace would reach past the VM boundary; each service has its own kernel";
const NO_SWARM = 'hyper-services runs one job on one host; there is no orchestrator to hand this to';
const NO_HOST_DEVICES = 'host devices are not passed into service VMs: that would break the VM boundary';
const NO_BUILD = 'images must come from a registry; hyper-services does not build images (use image:)';
const LOGS_KEPT = "a service's output is always kept, and shown by hyper logs and in the job summary";
const ONE_NETWORK = 'every service of a job is on the one job network';
const RESOLVER =
  "a service finds its peers through /etc/hosts, and other names through the job network's resolver";
const HOST_CGROUP =
  'the VM is bounded on the host by hyper itself; host cgroup settings do not reach into it';

/** Top-level keys. */
export const TOP_KEYS: Readonly<Record<string, KeyRule>> = {
  version: ignored('it is obsolete in the Compose Specification'),
  name: ignored('hyper names a job by its state directory, not by a project name'),
  include: honoured(
    'from files under the project directory; a path: list is merged in order, as -f files are',
  ),
  services: honoured(),
  models: refused('AI models need a model runner on the host; hyper-services has none'),
  networks: honoured('as the one job network: a bridge with an optional ipam subnet'),
  volumes: honoured('each named volume is a disk of its own, sized by driver_opts.size'),
  secrets: honoured('from a file or an environment variable'),
  configs: honoured('from a file, inline content or an environment variable'),
};

/** The keys of a service. */
export const SERVICE_KEYS: Readonly<Record<string, KeyRule>> = {
  develop: ignored('file watching is for a developer machine, not a CI job'),
  deploy: honoured('see the deploy keys'),
  annotations: ignored('annotations are for an OCI runtime; a service VM has none'),
  attach: ignored(LOGS_KEPT),
  build: refused(NO_BUILD),
  blkio_config: ignored('block I/O is not throttled per service'),
  cap_add: vm("capabilities added to Docker's default set, inside the service's own guest"),
  cap_drop: vm("capabilities taken from Docker's default set, inside the service's own guest"),
  cgroup: refused(HOST_NAMESPACE, ['private']),
  cgroup_parent: refused(HOST_CGROUP),
  command: honoured(),
  configs: vm('the file is put into the guest at its target, with its uid, gid and mode'),
  container_name: vm('another name the service answers to on the job network'),
  cpu_count: vm('the number of vCPUs'),
  cpu_percent: ignored('a VM gets whole vCPUs; use cpus'),
  cpu_shares: ignored('a VM gets whole vCPUs; use cpus'),
  cpu_quota: ignored('a VM gets whole vCPUs; use cpus'),
  cpu_period: ignored('a VM gets whole vCPUs; use cpus'),
  cpu_rt_period: ignored('real-time scheduling is not available to service VMs'),
  cpu_rt_runtime: ignored('real-time scheduling is not available to service VMs'),
  cpus: vm('the number of vCPUs, rounded up'),
  cpuset: ignored('vCPUs are not pinned to host CPUs'),
  credential_spec: ignored('a Windows container setting'),
  depends_on: honoured(),
  device_cgroup_rules: refused(NO_HOST_DEVICES),
  devices: refused(NO_HOST_DEVICES),
  dns: ignored(RESOLVER),
  dns_opt: ignored(RESOLVER),
  dns_search: ignored(RESOLVER),
  domainname: vm("the guest kernel's NIS domain name"),
  entrypoint: honoured(),
  env_file: honoured(),
  label_file: honoured(),
  environment: honoured(),
  expose: honoured(),
  extends: honoured(),
  provider: refused('a provider service is run by a plugin on the host; hyper-services runs only VMs'),
  external_links: ignored(ONE_NETWORK),
  extra_hosts: honoured(),
  gpus: refused(NO_HOST_DEVICES),
  group_add: honoured(
    "supplementary groups of the service and of every exec, from the image's /etc/group or by number",
  ),
  healthcheck: honoured(),
  hostname: honoured(),
  image: honoured(),
  init: vm('the guest init already runs as PID 1, reaps orphans and passes on the stop signal'),
  ipc: refused(HOST_NAMESPACE, ['private', 'shareable']),
  isolation: ignored('a Windows container setting; every service is isolated by its own VM'),
  labels: honoured(),
  links: ignored(`${ONE_NETWORK}, where every service reaches every other by name`),
  logging: ignored(LOGS_KEPT),
  mac_address: ignored('the job network gives each VM its own MAC'),
  mem_limit: vm("the VM's memory"),
  mem_reservation: ignored("the VM's memory is mem_limit (or deploy.resources.limits.memory)"),
  mem_swappiness: ignored('service VMs have no swap'),
  memswap_limit: ignored('service VMs have no swap'),
  network_mode: refused(
    "host or another service's network would reach past the VM boundary; every service is on the job network",
    ['bridge', 'default'],
  ),
  models: refused('AI models need a model runner on the host; hyper-services has none'),
  networks: honoured(ONE_NETWORK),
  oom_kill_disable: ignored("out of memory, the guest kernel's OOM killer acts inside the VM"),
  oom_score_adj: ignored("out of memory, the guest kernel's OOM killer acts inside the VM"),
  pid: refused(HOST_NAMESPACE),
  pids_limit: vm(
    "the most processes the service and its execs may have, counted in a pids cgroup of the guest's kernel",
  ),
  platform: vm('linux/amd64 is the only platform a service VM runs; any other is refused'),
  ports: honoured(),
  post_start: honoured(
    'each command runs in the container once the service has started, as an exec; one that fails stops it and fails the start',
  ),
  pre_start: honoured(
    "each step a one-shot VM of its own, run in order on the service's volumes and the job network before the service boots",
  ),
  pre_stop: vm(
    'each command runs in the container before its stop signal; one that fails aborts hyper stop, while hyper down and the post step report it and stop the service anyway',
  ),
  privileged: vm("every capability, inside the service's own guest; the host's devices stay out of it"),
  profiles: honoured('hyper up --profile, COMPOSE_PROFILES, or the compose-profiles input'),
  pull_policy: ignored('every image is resolved from its registry, and its blobs cached'),
  pull_refresh_after: ignored('every image is resolved from its registry, and its blobs cached'),
  read_only: vm("the container's root filesystem is mounted read-only in the guest"),
  restart: vm(
    "the guest init starts the service again in its VM, with Docker's back-off; hyper ps shows how many times",
  ),
  runtime: ignored('every service runs in a VM'),
  scale: vm('that many VMs of the service, named SERVICE.1 to SERVICE.N, behind its published ports'),
  security_opt: ignored(
    'seccomp, AppArmor and SELinux profiles for containers do not apply; the VM is the boundary',
  ),
  shm_size: vm("the size of the guest's /dev/shm"),
  secrets: vm(
    'the file is put into the guest at /run/secrets/NAME (or its target), with its uid, gid and mode',
  ),
  sysctls: vm("set in the service's own guest kernel, so any sysctl is allowed"),
  stdin_open: ignored('a service reads no terminal input in a job'),
  stop_grace_period: honoured(),
  stop_signal: honoured(),
  storage_opt: ignored('the root filesystem is a disk of the VM'),
  tmpfs: honoured(),
  tty: ignored('a service has no terminal in a job'),
  ulimits: vm('set for the service inside its guest'),
  use_api_socket: refused("the host's Docker socket is not put into service VMs", ['false']),
  user: honoured(),
  uts: refused(HOST_NAMESPACE),
  userns_mode: ignored('the service runs as its user in its own kernel; there is no user namespace to remap'),
  volumes: honoured('a named volume is a disk; a bind is a copy of the host path, or shared live'),
  volumes_from: refused('volumes are not shared between VMs'),
  working_dir: honoured(),
};

/** `deploy:`. */
export const DEPLOY_KEYS: Readonly<Record<string, KeyRule>> = {
  mode: ignored(NO_SWARM),
  endpoint_mode: ignored(NO_SWARM),
  replicas: vm(
    'that many VMs of the service, named SERVICE.1 to SERVICE.N; its name resolves to all of them, and its published ports spread connections across the healthy ones',
  ),
  labels: ignored('they label a Swarm service, not its containers'),
  rollback_config: ignored(NO_SWARM),
  update_config: ignored(NO_SWARM),
  resources: vm('limits size the VM'),
  restart_policy: vm(
    'condition (none, on-failure, any) and max_attempts, as restart: does; delay and window are not acted on',
  ),
  placement: ignored(NO_SWARM),
};

/** `deploy.resources.limits` and `deploy.resources.reservations`. */
export const RESOURCE_KEYS: Readonly<Record<string, KeyRule>> = {
  cpus: vm('limits.cpus is the number of vCPUs, rounded up; a reservation is not acted on'),
  memory: vm("limits.memory is the VM's memory; a reservation is not acted on"),
  pids: vm('limits.pids is the pids limit, as pids_limit; a reservation is not acted on'),
  generic_resources: refused(NO_HOST_DEVICES),
  devices: refused(NO_HOST_DEVICES),
};

export const HEALTHCHECK_KEYS: Readonly<Record<string, KeyRule>> = {
  disable: honoured(),
  interval: honoured(),
  retries: honoured(),
  test: honoured(),
  timeout: honoured(),
  start_period: honoured(),
  start_interval: vm(
    'a starting service is probed every second, or sooner when start_interval or interval is shorter: a job waits no longer than it must',
  ),
};

/** An entry of `depends_on:` in its long form. */
export const DEPENDS_ON_KEYS: Readonly<Record<string, KeyRule>> = {
  condition: honoured('service_started and service_healthy; services run for the whole job'),
  required: honoured(),
  restart: ignored('it follows a restart made by a compose command, and hyper has none'),
};

/** An entry of `ports:` in its long form. */
export const PORT_KEYS: Readonly<Record<string, KeyRule>> = {
  name: ignored('a port has no name here'),
  mode: ignored(NO_SWARM),
  host_ip: honoured(),
  target: honoured(),
  published: honoured(),
  protocol: honoured('tcp and udp'),
  app_protocol: ignored('it is a hint for other tools'),
};

/** An entry of `volumes:` in its long form. */
export const VOLUME_MOUNT_KEYS: Readonly<Record<string, KeyRule>> = {
  type: honoured('volume, bind, tmpfs and image'),
  source: honoured(),
  target: honoured(),
  read_only: honoured(),
  consistency: ignored('a macOS setting'),
  bind: ignored('bind options do not apply: a bind is a copy of the host path, or shared live'),
  volume: ignored('volume options are not acted on'),
  tmpfs: ignored('tmpfs options are not acted on'),
  image: honoured(
    "type: image mounts the image's root filesystem, or its subpath, read-only: the cached ext4 of the image as a read-only disk",
  ),
};

/** An entry of a service's `networks:` map. */
export const SERVICE_NETWORK_KEYS: Readonly<Record<string, KeyRule>> = {
  aliases: honoured(),
  interface_name: ignored(`${ONE_NETWORK}, on eth0`),
  ipv4_address: ignored(`${ONE_NETWORK}, which gives out the addresses`),
  ipv6_address: ignored(`${ONE_NETWORK}, which is IPv4`),
  link_local_ips: ignored(ONE_NETWORK),
  mac_address: ignored('the job network gives each VM its own MAC'),
  driver_opts: ignored(ONE_NETWORK),
  priority: ignored(ONE_NETWORK),
  gw_priority: ignored(ONE_NETWORK),
};

/** An entry of a service's `secrets:` or `configs:` in its long form. */
export const FILE_GRANT_KEYS: Readonly<Record<string, KeyRule>> = {
  source: honoured(),
  target: honoured(),
  uid: honoured(),
  gid: honoured(),
  mode: honoured(),
};

/** An entry of the top-level `networks:`. */
export const NETWORK_KEYS: Readonly<Record<string, KeyRule>> = {
  name: ignored(ONE_NETWORK),
  driver: honoured('bridge only'),
  driver_opts: ignored(ONE_NETWORK),
  ipam: honoured('one subnet for the job network'),
  external: refused(`${ONE_NETWORK}, which the job makes itself`, ['false']),
  internal: ignored('use hyper up --egress deny, or the egress input'),
  enable_ipv4: ignored(`${ONE_NETWORK}, which is IPv4`),
  enable_ipv6: ignored(`${ONE_NETWORK}, which is IPv4`),
  attachable: ignored(ONE_NETWORK),
  labels: ignored(ONE_NETWORK),
};

/** An entry of the top-level `volumes:`. */
export const VOLUME_KEYS: Readonly<Record<string, KeyRule>> = {
  name: ignored('a volume is named by its key'),
  driver: ignored('every volume is a disk image'),
  driver_opts: honoured('size only'),
  external: refused('a volume is a disk of the job; an external one is not there to use', ['false']),
  labels: ignored('volumes carry no labels here'),
};

/** An entry of the top-level `secrets:`. */
export const SECRET_KEYS: Readonly<Record<string, KeyRule>> = {
  name: ignored('a secret is named by its key'),
  environment: honoured(),
  file: honoured(),
  external: refused('an external secret lives in a Swarm, which a job does not have', ['false']),
  labels: ignored('secrets carry no labels here'),
  driver: refused(NO_SWARM),
  driver_opts: refused(NO_SWARM),
  template_driver: refused(NO_SWARM),
};

/** An entry of the top-level `configs:`. */
export const CONFIG_KEYS: Readonly<Record<string, KeyRule>> = {
  name: ignored('a config is named by its key'),
  content: honoured(),
  environment: honoured(),
  file: honoured(),
  external: refused('an external config lives in a Swarm, which a job does not have', ['false']),
  labels: ignored('configs carry no labels here'),
  template_driver: refused(NO_SWARM),
};

/** Every table, by where its keys sit in a compose file, for the docs and the schema check. */
export const KEY_TABLES: Readonly<Record<string, Readonly<Record<string, KeyRule>>>> = {
  '(top level)': TOP_KEYS,
  'services.NAME': SERVICE_KEYS,
  'services.NAME.deploy': DEPLOY_KEYS,
  'services.NAME.deploy.resources.limits / reservations': RESOURCE_KEYS,
  'services.NAME.healthcheck': HEALTHCHECK_KEYS,
  'services.NAME.depends_on.NAME': DEPENDS_ON_KEYS,
  'services.NAME.ports[]': PORT_KEYS,
  'services.NAME.volumes[]': VOLUME_MOUNT_KEYS,
  'services.NAME.networks.NAME': SERVICE_NETWORK_KEYS,
  'services.NAME.secrets[] / configs[]': FILE_GRANT_KEYS,
  'networks.NAME': NETWORK_KEYS,
  'volumes.NAME': VOLUME_KEYS,
  'secrets.NAME': SECRET_KEYS,
  'configs.NAME': CONFIG_KEYS,
};
