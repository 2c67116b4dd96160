import * as core from '@actions/core';
import { removeNetwork } from '../network/job.js';
import { rm } from 'node:fs/promises';
import {
  listServicesForTeardown,
  removeService,
  serviceLogs,
  stateText,
  stopService,
} from '../engine/service.js';
import { readUsage, type VmUsage } from '../engine/usage.js';
import { QemuHypervisor } from '../vm/qemu/machine.js';
import { saveImageCache } from './cache.js';
import { saveCheckpoints } from './checkpoint-cache.js';
import { keepIfFailed } from './debug-artifact.js';
import { getKeepOnFailure } from './inputs.js';
import { Inputs } from './constants.js';
import { savedCheckpointCacheState, savedImageCacheState, savedMainDone, savedStateDir } from './state.js';

const STOP_GRACE_MS = 10_000;

interface ServiceReport {
  name: string;
  /** "running", "exited (3)", "exited (kernel panic)": as found at teardown. */
  state: string;
  /** Undefined when its QEMU was already gone. */
  usage: VmUsage | undefined;
}

async function writeUsageSummary(reports: ServiceReport[]): Promise<void> {
  if (reports.length === 0) return;
  const header = ['service', 'state at teardown', 'VM-seconds', 'CPU-seconds', 'peak memory'].map((data) => ({
    data,
    header: true,
  }));
  const rows = reports.map(({ name, state, usage: u }) => [
    name,
    state,
    u ? u.vmSeconds.toFixed(1) : '-',
    u ? u.cpuSeconds.toFixed(1) : '-',
    u ? `${u.peakMemoryMiB.toFixed(0)} MiB` : '-',
  ]);
  await core.summary
    .addHeading('hyper-services usage', 3)
    .addTable([header, ...rows])
    .write();
}

/** Tears down every VM of this job. Never fails the job: teardown problems are warnings. */
export async function postRun(): Promise<void> {
  if (!savedStateDir) {
    core.info('Nothing to tear down: the main step did not get far enough to create state');
    return;
  }
  process.env.HYPER_STATE_DIR = savedStateDir;
  const host = { hypervisor: new QemuHypervisor() };
  // Before teardown: the snapshots live in the VMs' disks.
  const checkpoint = savedCheckpointCacheState();
  if (checkpoint) {
    // Neither keeping nor saving may stop the teardown below.
    await core
      .group('Save the checkpoint cache', () =>
        saveCheckpoints(checkpoint.key, checkpoint.name, checkpoint.restoredKey, host),
      )
      .catch((error: unknown) => core.warning(`checkpoint cache: ${(error as Error).message}`));
  }
  await keepIfFailed(
    getKeepOnFailure(),
    savedMainDone,
    core.getInput(Inputs.GithubToken) || undefined,
    host,
  ).catch((error: unknown) => core.warning(`keep-on-failure: ${(error as Error).message}`));
  const usage: ServiceReport[] = [];
  const { services, damaged } = await listServicesForTeardown(host);
  for (const { name, error } of damaged) {
    core.warning(`${error.message}; removing it`);
    await removeService(name, true, host).catch((removal: unknown) =>
      core.warning(`teardown of ${name}: ${(removal as Error).message}`),
    );
  }
  for (const { record, state } of services) {
    await core.group(`Logs of ${record.name}`, async () => core.info(await serviceLogs(record.name)));
    if (!state.running && state.crash) {
      core.warning(`${record.name}: the guest crashed (${state.crash})`);
      await core.group(`Console of ${record.name}`, async () => core.info(state.consoleTail ?? ''));
    }
    try {
      usage.push({ name: record.name, state: stateText(state), usage: await readUsage(record) });
      const code = await stopService(record.name, STOP_GRACE_MS, host);
      core.info(`${record.name}: stopped (exit code ${code ?? 'unknown'})`);
      await removeService(record.name, true, host);
    } catch (error: unknown) {
      core.warning(`teardown of ${record.name}: ${(error as Error).message}`);
    }
  }
  // Whatever is left of the job network (a service that never booted) goes too.
  await removeNetwork(savedStateDir).catch((error: unknown) =>
    core.warning(`teardown of the job network: ${(error as Error).message}`),
  );
  await writeUsageSummary(usage).catch((error: unknown) =>
    core.warning(`usage summary: ${(error as Error).message}`),
  );
  await rm(savedStateDir, { recursive: true, force: true }).catch((error: unknown) =>
    core.warning(`could not remove ${savedStateDir}: ${(error as Error).message}`),
  );
  const cache = savedImageCacheState();
  if (cache) {
    await core.group('Save the image cache', () =>
      saveImageCache(cache.names, cache.images, cache.restoredKey),
    );
  }
}
