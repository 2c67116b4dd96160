import type { ImageConfig } from '../types/oci/index.js';

/** The parts of an image config that decide how its service runs. */
export interface ImageRunConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
  stopSignal: string;
  exposedPorts: string[];
  volumes: string[];
}

/** Reads the run settings out of an image config, with Docker's defaults for what is absent. Pure. */
export function imageRunConfig(config: ImageConfig): ImageRunConfig {
  const c = config.config ?? {};
  return {
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    env: c.Env ?? [],
    workingDir: c.WorkingDir || '/',
    user: c.User ?? '',
    stopSignal: c.StopSignal || 'SIGTERM',
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
    volumes: Object.keys(c.Volumes ?? {}),
  };
}
