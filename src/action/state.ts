import * as core from '@actions/core';
import { StateKeys } from './constants.js';

/** The only place that reads or writes the action's post-step state. */
export const savedStateDir: string = core.getState(StateKeys.StateDir);

export function saveStateDir(dir: string): void {
  core.saveState(StateKeys.StateDir, dir);
}
