export enum Inputs {
  Services = 'services',
  ComposeFile = 'compose-file',
  ComposeProfiles = 'compose-profiles',
  Accel = 'accel',
  WaitTimeout = 'wait-timeout',
  RegistryMirror = 'registry-mirror',
  InsecureRegistries = 'insecure-registries',
  GithubToken = 'github-token',
  Cache = 'cache',
  VolumeSize = 'volume-size',
  CheckpointKey = 'checkpoint-key',
  CheckpointName = 'checkpoint-name',
  KeepOnFailure = 'keep-on-failure',
  Network = 'network',
  Egress = 'egress',
  EgressAllow = 'egress-allow',
  Subnet = 'subnet',
  DockerApi = 'docker-api',
  Templates = 'templates',
}

export enum Outputs {
  Accel = 'accel',
  StateDir = 'state-dir',
  Services = 'services',
  CheckpointHit = 'checkpoint-hit',
  Network = 'network',
  DockerHost = 'docker-host',
}

export enum StateKeys {
  StateDir = 'state-dir',
  /** What the post step saves to the image cache: names, images and the key restored. */
  ImageCache = 'image-cache',
  /** What the post step saves to the checkpoint cache: key, snapshot name and the key restored. */
  CheckpointCache = 'checkpoint-cache',
  /** Set when the main step finished: every service is up. */
  MainDone = 'main-done',
  /** The Docker API daemon the main step started: pid, socket and log. */
  DockerApi = 'docker-api',
}

/** The keep-on-failure input's values: what to keep as an artifact when the job fails. */
export const KEEP_ON_FAILURE = ['false', 'volumes', 'checkpoint'] as const;
export type KeepOnFailure = (typeof KEEP_ON_FAILURE)[number];
