import * as core from '@actions/core';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAccelChoice } from '../install/accel.js';
import { prepareHost } from '../lifecycle/host.js';
import { projectRoot } from '../project-root.js';
import { setCommandLogger } from '../process/run.js';
import { Inputs, Outputs } from './constants.js';
import { enableKvm } from './kvm.js';
import { saveStateDir } from './state.js';

/** The job's state lives in RUNNER_TEMP, which the runner empties after the job. */
function jobStateDir(): string {
  const base = process.env.RUNNER_TEMP || path.join(process.cwd(), '.hyper');
  return path.join(base, 'hyper');
}

/** A `hyper` on PATH for later steps, pointed at this action's CLI bundle. */
async function installCli(stateDir: string): Promise<void> {
  const binDir = path.join(stateDir, 'bin');
  await mkdir(binDir, { recursive: true });
  const cli = path.join(projectRoot(), 'dist', 'cli', 'index.js');
  await writeFile(path.join(binDir, 'hyper'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`, {
    mode: 0o755,
  });
  core.addPath(binDir);
}

export async function mainRun(): Promise<void> {
  setCommandLogger((line) => core.debug(line));
  const accelChoice = parseAccelChoice(core.getInput(Inputs.Accel), `input "${Inputs.Accel}"`);
  const stateDir = jobStateDir();
  await mkdir(stateDir, { recursive: true });
  saveStateDir(stateDir);
  process.env.HYPER_STATE_DIR = stateDir;
  core.exportVariable('HYPER_STATE_DIR', stateDir);

  if (accelChoice !== 'tcg' && process.env.GITHUB_ACTIONS === 'true') {
    core.info(await core.group('Enable KVM', enableKvm));
  }
  const host = await core.group('Install host tools and guest bundle', () =>
    prepareHost(
      accelChoice,
      { info: core.info, warn: core.warning },
      {
        repository: process.env.GITHUB_ACTION_REPOSITORY,
        tag: process.env.GITHUB_ACTION_REF,
        token: core.getInput(Inputs.GithubToken) || undefined,
      },
    ),
  );
  // Later `hyper` steps reuse this decision instead of probing again.
  core.exportVariable('HYPER_ACCEL', host.accel);
  core.setOutput(Outputs.Accel, host.accel);
  core.setOutput(Outputs.StateDir, stateDir);
  await installCli(stateDir);
  core.info(`hyper is ready (accel ${host.accel}, guest bundle ${host.bundle.version})`);
}
