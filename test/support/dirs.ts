import os from 'node:os';
import { hostSettings } from '../../src/engine/settings.js';

/** The cache dir the CLI would use with this process's environment. */
export function cacheDir(): string {
  return hostSettings(process.env, os.homedir()).cacheDir;
}
