export enum Inputs {
  Services = 'services',
  ComposeFile = 'compose-file',
  Accel = 'accel',
  WaitTimeout = 'wait-timeout',
  RegistryMirror = 'registry-mirror',
  InsecureRegistries = 'insecure-registries',
  GithubToken = 'github-token',
  Cache = 'cache',
  VolumeSize = 'volume-size',
  CheckpointKey = 'checkpoint-key',
  CheckpointName = 'checkpoint-name',
}

export enum Outputs {
  Accel = 'accel',
  StateDir = 'state-dir',
  Services = 'services',
  CheckpointHit = 'checkpoint-hit',
}

export enum StateKeys {
  StateDir = 'state-dir',
  /** What the post step saves to the image cache: names, images and the key restored. */
  ImageCache = 'image-cache',
  /** What the post step saves to the checkpoint cache: key, snapshot name and the key restored. */
  CheckpointCache = 'checkpoint-cache',
}
