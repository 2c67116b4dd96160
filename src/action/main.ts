import * as core from '@actions/core';
import { preflightNetwork, readNetwork } from '../network/job.js';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { prepareHost } from '../engine/host.js';
import { pruneOrphanVms } from '../engine/orphans.js';
import {
  checkStillRunning,
  portVariables,
  servicesContext,
  ServiceStartError,
  upServices,
  type ServiceStatus,
} from '../engine/up.js';
import { formatPort } from '../network/ports.js';
import { projectRoot } from '../project-root.js';
import { setCommandLogger } from '../process/run.js';
import { restoreImageCache } from './cache.js';
import { checkpointKeys, restoreCheckpoints, type RestoredCheckpoints } from './checkpoint-cache.js';
import { Outputs } from './constants.js';
import { getInputs } from './inputs.js';
import { enableKvm } from './kvm.js';
import { saveCheckpointCacheState, saveImageCacheState, saveMainDone, saveStateDir } from './state.js';

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

async function writeSummary(statuses: readonly ServiceStatus[]): Promise<void> {
  if (statuses.length === 0) return;
  const header = ['service', 'image', 'accel', 'boot ms', 'healthy ms', 'ports', 'memory'].map((data) => ({
    data,
    header: true,
  }));
  const rows = statuses.map((s) => [
    s.name,
    `${s.image}@${s.imageDigest}`,
    s.accel,
    String(s.bootMs),
    String(s.healthyMs),
    s.ports.map(formatPort).join(', '),
    `${s.memoryMiB} MiB`,
  ]);
  await core.summary
    .addHeading('hyper-services', 3)
    .addTable([header, ...rows])
    .write();
}

async function showLog(error: ServiceStartError): Promise<void> {
  await core.group(`Log of ${error.service}`, async () =>
    core.info(error.log || '(the service wrote nothing)'),
  );
}

export async function mainRun(): Promise<void> {
  setCommandLogger((line) => core.debug(line));
  const inputs = getInputs();
  const stateDir = jobStateDir();
  await mkdir(stateDir, { recursive: true });
  saveStateDir(stateDir);
  core.exportVariable('HYPER_STATE_DIR', stateDir);
  if (inputs.volumeSize !== undefined) {
    // Sets it for this process too: later `hyper` steps make their volumes with the same default.
    core.exportVariable('HYPER_VOLUME_SIZE', String(inputs.volumeSize));
  }
  await preflightNetwork(stateDir, inputs.network);
  // A later `hyper run` step joins the job network; these say how to make it if it has to.
  core.exportVariable('HYPER_NETWORK', inputs.network.mode);
  core.exportVariable('HYPER_EGRESS', inputs.network.egress);
  if (inputs.network.allow.length) core.exportVariable('HYPER_EGRESS_ALLOW', inputs.network.allow.join(','));
  if (inputs.network.subnet) core.exportVariable('HYPER_SUBNET', inputs.network.subnet);

  if (inputs.accel !== 'tcg' && process.env.GITHUB_ACTIONS === 'true') {
    core.info(await core.group('Enable KVM', enableKvm));
  }
  const host = await core.group('Install host tools and guest bundle', () =>
    prepareHost(
      inputs.accel,
      { info: core.info, warn: core.warning },
      {
        repository: process.env.GITHUB_ACTION_REPOSITORY,
        tag: process.env.GITHUB_ACTION_REF,
        token: inputs.githubToken,
      },
      process.env.HYPER_KVM_DEVICE ? { kvmDevice: process.env.HYPER_KVM_DEVICE } : {},
    ),
  );
  await pruneOrphanVms(core.info);
  // Later `hyper` steps reuse this decision instead of probing again.
  core.exportVariable('HYPER_ACCEL', host.accel);
  core.setOutput(Outputs.Accel, host.accel);
  core.setOutput(Outputs.StateDir, stateDir);
  await installCli(stateDir);

  let statuses: ServiceStatus[] = [];
  const serviceCount = inputs.plan.flat().length;
  if (serviceCount > 0) {
    const imageNames = inputs.plan.flat().map((spec) => spec.image);
    const restoredKey = inputs.cache
      ? await core.group('Restore the image cache', () => restoreImageCache(imageNames))
      : undefined;
    const checkpointCache = inputs.checkpoint ? await checkpointKeys(inputs.checkpoint.key, host) : undefined;
    let checkpoints: RestoredCheckpoints | undefined;
    if (checkpointCache) {
      checkpoints = await core.group('Restore the checkpoint cache', () =>
        restoreCheckpoints(checkpointCache),
      );
    }
    try {
      statuses = await core.group(`Start ${serviceCount} service(s)`, () =>
        upServices(
          inputs.plan,
          host,
          {
            waitTimeoutMs: inputs.waitTimeoutMs,
            registry: {
              registryMirror: inputs.registryMirror,
              insecureRegistries: inputs.insecureRegistries,
            },
            baseDir: process.env.GITHUB_WORKSPACE ?? process.cwd(),
            labels: { job: `${process.env.GITHUB_RUN_ID ?? ''}-${process.env.GITHUB_JOB ?? ''}` },
            ...(inputs.volumeSize !== undefined ? { volumeSize: inputs.volumeSize } : {}),
            ...(checkpoints ? { checkpoints: checkpoints.files } : {}),
            network: inputs.network,
          },
          { info: core.info, warn: core.warning },
        ),
      );
    } catch (error: unknown) {
      if (error instanceof ServiceStartError) await showLog(error);
      throw error;
    } finally {
      await checkpoints?.cleanup();
    }
    if (checkpointCache && inputs.checkpoint) {
      const saved = Object.keys(checkpoints?.files ?? {});
      const resumed = statuses.filter((s) => s.restoredFrom !== undefined).map((s) => s.name);
      const hit = saved.length > 0 && saved.every((name) => resumed.includes(name));
      core.setOutput(Outputs.CheckpointHit, String(hit));
      saveCheckpointCacheState({
        key: checkpointCache.key,
        name: inputs.checkpoint.name,
        ...(hit && checkpoints ? { restoredKey: checkpoints.key } : {}),
      });
    }
    if (inputs.cache) {
      saveImageCacheState({
        names: imageNames,
        images: statuses.map((s) => ({ configDigest: s.imageConfigDigest, blobs: s.imageBlobs })),
        ...(restoredKey ? { restoredKey } : {}),
      });
    }
  }
  core.setOutput(Outputs.Services, JSON.stringify(servicesContext(statuses)));
  const network = await readNetwork(stateDir);
  if (network) core.setOutput(Outputs.Network, network.mode);
  for (const [name, value] of Object.entries(portVariables(statuses))) core.exportVariable(name, value);
  await writeSummary(statuses);
  // Last word before the job's steps run: every service is still up.
  await checkStillRunning(statuses, host).catch(async (error: unknown) => {
    if (error instanceof ServiceStartError) await showLog(error);
    throw error;
  });
  saveMainDone();
  core.info(
    `hyper is ready (accel ${host.accel}, guest bundle ${host.bundle.version}, ${statuses.length} service(s))`,
  );
}
