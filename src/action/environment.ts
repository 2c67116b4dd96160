import os from 'node:os';
import path from 'node:path';
import { hostSettings, type HostSettings } from '../engine/settings.js';
import { toolCacheEnv } from '../guest/bundle.js';

/**
 * The host settings of this step, read once from its environment, with the
 * job's state in `stateDir`. @actions/tool-cache's variables are filled in
 * where the runner has not set them.
 */
export function actionHost(stateDir: string): HostSettings {
  const host = { ...hostSettings(process.env, os.homedir()), stateDir };
  for (const [name, value] of Object.entries(toolCacheEnv(host.cacheDir))) process.env[name] ??= value;
  return host;
}

/** The job's state lives in RUNNER_TEMP, which the runner empties after the job. */
export function jobStateDir(): string {
  const base = process.env.RUNNER_TEMP || path.join(process.cwd(), '.hyper');
  return path.join(base, 'hyper');
}

/** Where staged cache archives go: RUNNER_TEMP, the same path in every run, as @actions/cache versions by path. */
export function stagingBase(cacheDir: string): string {
  return process.env.RUNNER_TEMP ?? cacheDir;
}
