export enum Inputs {
  Services = 'services',
  ComposeFile = 'compose-file',
  Accel = 'accel',
  WaitTimeout = 'wait-timeout',
  RegistryMirror = 'registry-mirror',
  InsecureRegistries = 'insecure-registries',
  GithubToken = 'github-token',
  Cache = 'cache',
}

export enum Outputs {
  Accel = 'accel',
  StateDir = 'state-dir',
  Services = 'services',
}

export enum StateKeys {
  StateDir = 'state-dir',
  /** What the post step saves to the image cache: names, images and the key restored. */
  ImageCache = 'image-cache',
}
