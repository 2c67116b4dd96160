import * as core from '@actions/core';
import type { CachedImage } from '../images/cache-archive.js';
import { StateKeys } from './constants.js';

/** The only place that reads or writes the action's post-step state. */
export const savedStateDir: string = core.getState(StateKeys.StateDir);

export function saveStateDir(dir: string): void {
  core.saveState(StateKeys.StateDir, dir);
}

/** What the main step asks the post step to keep in the image cache. */
export interface ImageCacheState {
  names: string[];
  images: CachedImage[];
  /** The service templates the services started from or were kept as. */
  templates: string[];
  restoredKey?: string;
}

export function saveImageCacheState(state: ImageCacheState): void {
  core.saveState(StateKeys.ImageCache, JSON.stringify(state));
}

export function savedImageCacheState(): ImageCacheState | undefined {
  const text = core.getState(StateKeys.ImageCache);
  return text ? (JSON.parse(text) as ImageCacheState) : undefined;
}

/** What the main step asks the post step to save to the checkpoint cache. */
export interface CheckpointCacheState {
  key: string;
  name: string;
  /** Set only when every service in the restored entry started from it. */
  restoredKey?: string;
}

export function saveCheckpointCacheState(state: CheckpointCacheState): void {
  core.saveState(StateKeys.CheckpointCache, JSON.stringify(state));
}

export function savedCheckpointCacheState(): CheckpointCacheState | undefined {
  const text = core.getState(StateKeys.CheckpointCache);
  return text ? (JSON.parse(text) as CheckpointCacheState) : undefined;
}

export function saveMainDone(): void {
  core.saveState(StateKeys.MainDone, 'true');
}

export const savedMainDone: boolean = core.getState(StateKeys.MainDone) === 'true';

/** The Docker API daemon (`hyper serve`) the main step left running for the post step to stop. */
export interface DockerApiState {
  pid: number;
  socket: string;
  /** Its stdout and stderr. */
  log: string;
  /** A directory made only to hold the socket (the state dir's path was too long for one); post removes it. */
  socketDir?: string;
}

export function saveDockerApiState(state: DockerApiState): void {
  core.saveState(StateKeys.DockerApi, JSON.stringify(state));
}

export function savedDockerApiState(): DockerApiState | undefined {
  const text = core.getState(StateKeys.DockerApi);
  return text ? (JSON.parse(text) as DockerApiState) : undefined;
}
