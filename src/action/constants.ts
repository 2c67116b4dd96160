export enum Inputs {
  Accel = 'accel',
  GithubToken = 'github-token',
}

export enum Outputs {
  Accel = 'accel',
  StateDir = 'state-dir',
}

export enum StateKeys {
  StateDir = 'state-dir',
}
