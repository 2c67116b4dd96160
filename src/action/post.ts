import * as core from '@actions/core';
import { removeNetwork } from '../network/job.js';
import { rm } from 'node:fs/promises';
import { listServices, removeService, serviceLogs, stopService } from '../lifecycle/service.js';
import { readUsage, type VmUsage } from '../lifecycle/usage.js';
import { QemuHypervisor } from '../vm/qemu/machine.js';
import { saveImageCache } from './cache.js';
import { saveCheckpoints } from './checkpoint-cache.js';
import { keepIfFailed } from './debug-artifact.js';
import { getKeepOnFailure } from './inputs.js';
import { Inputs } from './constants.js';
import { savedCheckpointCacheState, savedImageCacheState, savedMainDone, savedStateDir } from './state.js';

const STOP_GRACE_MS = 10_000;

async function writeUsageSummary(usage: [string, VmUsage][]): Promise<void> {
  if (usage.length === 0) return;
  const header = ['service', 'VM-seconds', 'CPU-seconds', 'peak memory'].map((data) => ({
    data,
    header: true,
  }));
  const rows = usage.map(([name, u]) => [
    name,
    u.vmSeconds.toFixed(1),
    u.cpuSeconds.toFixed(1),
    `${u.peakMemoryMiB.toFixed(0)} MiB`,
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
    await core.group('Save the checkpoint cache', () =>
      saveCheckpoints(checkpoint.key, checkpoint.name, checkpoint.restoredKey, host),
    );
  }
  await keepIfFailed(getKeepOnFailure(), savedMainDone, core.getInput(Inputs.GithubToken) || undefined, host);
  const usage: [string, VmUsage][] = [];
  for (const { record } of await listServices(host)) {
    await core.group(`Logs of ${record.name}`, async () => core.info(await serviceLogs(record.name)));
    try {
      const used = await readUsage(record);
      if (used) usage.push([record.name, used]);
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
