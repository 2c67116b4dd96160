export enum Inputs {
  Services = 'services',
  ComposeFile = 'compose-file',
  Accel = 'accel',
  WaitTimeout = 'wait-timeout',
  RegistryMirror = 'registry-mirror',
  InsecureRegistries = 'insecure-registries',
  GithubToken = 'github-token',
}

export enum Outputs {
  Accel = 'accel',
  StateDir = 'state-dir',
  Services = 'services',
}

export enum StateKeys {
  StateDir = 'state-dir',
}
