import * as core from '@actions/core';
import { rm } from 'node:fs/promises';
import { stateText } from '../engine/container.js';
import { Job } from '../engine/job.js';
import { readUsage, type VmUsage } from '../engine/usage.js';
import { actionHost } from './environment.js';
import { saveImageCache } from './cache.js';
import { saveCheckpoints } from './checkpoint-cache.js';
import { keepIfFailed } from './debug-artifact.js';
import { logTail, stopDockerApi } from './docker-api.js';
import { getKeepOnFailure } from './inputs.js';
import { Inputs } from './constants.js';
import {
  savedCheckpointCacheState,
  savedDockerApiState,
  savedImageCacheState,
  savedMainDone,
  savedStateDir,
  type DockerApiState,
} from './state.js';

const DAEMON_LOG_CHARS = 64_000;

interface ServiceReport {
  name: string;
  /** "running", "exited (3)", "exited (kernel panic)": as found at teardown. */
  state: string;
  /** Undefined when its QEMU was already gone. */
  usage: VmUsage | undefined;
}

async function writeUsageSummary(reports: ServiceReport[]): Promise<void> {
  if (reports.length === 0) return;
  const header = [
    'service',
    'state at teardown',
    'VM-seconds',
    'CPU-seconds',
    'peak memory',
    'own / shared memory',
  ].map((data) => ({
    data,
    header: true,
  }));
  const rows = reports.map(({ name, state, usage: u }) => [
    name,
    state,
    u ? u.vmSeconds.toFixed(1) : '-',
    u ? u.cpuSeconds.toFixed(1) : '-',
    u ? `${u.peakMemoryMiB.toFixed(0)} MiB` : '-',
    u?.memory ? `${u.memory.ownMiB.toFixed(0)} / ${(u.memory.rssMiB - u.memory.ownMiB).toFixed(0)} MiB` : '-',
  ]);
  await core.summary
    .addHeading('hyper-services usage', 3)
    .addTable([header, ...rows])
    .write();
}

/** Stops the Docker API daemon so that no client changes the job while it is torn down. */
async function stopDaemon(daemon: DockerApiState): Promise<void> {
  await core.group('Stop the Docker API (hyper serve)', async () => {
    await stopDockerApi(daemon, { info: core.info, warn: core.warning });
    core.info(`--- its log (${daemon.log}):`);
    core.info(await logTail(daemon.log, DAEMON_LOG_CHARS));
  });
}

/** Tears down every VM of this job. Never fails the job: teardown problems are warnings. */
export async function postRun(): Promise<void> {
  if (!savedStateDir) {
    core.info('Nothing to tear down: the main step did not get far enough to create state');
    return;
  }
  const daemon = savedDockerApiState();
  if (daemon) {
    await stopDaemon(daemon).catch((error: unknown) =>
      core.warning(`docker-api: could not stop hyper serve: ${(error as Error).message}`),
    );
  }
  const host = actionHost(savedStateDir);
  const job = await Job.open(host);
  for (const warning of job.warnings) core.warning(warning);
  // Before teardown: the snapshots live in the VMs' disks.
  const checkpoint = savedCheckpointCacheState();
  if (checkpoint) {
    // Neither keeping nor saving may stop the teardown below.
    await core
      .group('Save the checkpoint cache', () =>
        saveCheckpoints(checkpoint.key, checkpoint.name, checkpoint.restoredKey, job),
      )
      .catch((error: unknown) => core.warning(`checkpoint cache: ${(error as Error).message}`));
  }
  await keepIfFailed(
    getKeepOnFailure(),
    savedMainDone,
    core.getInput(Inputs.GithubToken) || undefined,
    job,
  ).catch((error: unknown) => core.warning(`keep-on-failure: ${(error as Error).message}`));
  const usage: ServiceReport[] = [];
  await job.down(
    // Each service's stop_grace_period, else Docker's 10 s.
    { graceMs: undefined, keepGoing: true },
    {
      damaged: (_name, error) => core.warning(`${error.message}; removing it`),
      async before({ record, state }) {
        await core.group(`Logs of ${record.name}`, async () => core.info(await job.logText(record.name)));
        if (!state.running && state.crash) {
          core.warning(`${record.name}: the guest crashed (${state.crash})`);
          await core.group(`Console of ${record.name}`, async () => core.info(state.consoleTail ?? ''));
        }
        const read = await readUsage(record).catch((error: unknown) => {
          core.warning(`usage of ${record.name}: ${(error as Error).message}`);
          return undefined;
        });
        usage.push({ name: record.name, state: stateText(state), usage: read });
      },
      stopped: (name, code) => core.info(`${name}: stopped (exit code ${code ?? 'unknown'}) and removed`),
      failed: (what, error) => core.warning(`teardown of ${what}: ${(error as Error).message}`),
    },
  );
  await writeUsageSummary(usage).catch((error: unknown) =>
    core.warning(`usage summary: ${(error as Error).message}`),
  );
  await rm(savedStateDir, { recursive: true, force: true }).catch((error: unknown) =>
    core.warning(`could not remove ${savedStateDir}: ${(error as Error).message}`),
  );
  const cache = savedImageCacheState();
  if (cache) {
    await core.group('Save the image cache', () => saveImageCache(cache, host.cacheDir));
  }
}
