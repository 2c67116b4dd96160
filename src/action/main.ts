import * as core from '@actions/core';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Job } from '../engine/job.js';
import { defaultVolumeSize } from '../storage/volumes.js';
import { pruneOrphanVms } from '../engine/orphans.js';
import { portVariables, servicesContext, ServiceStartError, type ServiceStatus } from '../engine/up.js';
import { projectRoot } from '../project-root.js';
import { setCommandLogger } from '../process/run.js';
import { restoreImageCache } from './cache.js';
import { checkpointKeys, restoreCheckpoints, type RestoredCheckpoints } from './checkpoint-cache.js';
import { Outputs } from './constants.js';
import { actionHost, jobStateDir } from './environment.js';
import { getInputs } from './inputs.js';
import { summaryRows } from './summary.js';
import { enableKvm } from './kvm.js';
import { startDockerApi } from './docker-api.js';
import {
  saveCheckpointCacheState,
  saveDockerApiState,
  saveImageCacheState,
  saveMainDone,
  saveStateDir,
} from './state.js';

/** This action's CLI bundle. */
function cliBundle(): string {
  return path.join(projectRoot(), 'dist', 'cli', 'index.js');
}

/** A `hyper` on PATH for later steps, pointed at this action's CLI bundle. */
async function installCli(stateDir: string): Promise<void> {
  const binDir = path.join(stateDir, 'bin');
  await mkdir(binDir, { recursive: true });
  const cli = cliBundle();
  await writeFile(path.join(binDir, 'hyper'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`, {
    mode: 0o755,
  });
  core.addPath(binDir);
}

async function writeSummary(statuses: readonly ServiceStatus[]): Promise<void> {
  if (statuses.length === 0) return;
  const header = [
    'service',
    'image',
    'accel',
    'started from',
    'boot ms',
    'healthy ms',
    'ports',
    'memory',
  ].map((data) => ({
    data,
    header: true,
  }));
  const rows = summaryRows(statuses);
  await core.summary
    .addHeading('hyper-services', 3)
    .addTable([header, ...rows])
    .write();
}

/** `hyper serve` over this job's VMs, as DOCKER_HOST for later steps; the post step stops it. */
async function serveDockerApi(stateDir: string): Promise<string> {
  const daemon = await core.group('Start the Docker API (hyper serve)', () =>
    startDockerApi({
      cli: cliBundle(),
      stateDir,
      // By now process.env has every HYPER_* this step exported (accel as decided, network...); job.json has the rest.
      env: { ...process.env, HYPER_STATE_DIR: stateDir },
      debug: core.isDebug(),
      started: saveDockerApiState,
    }),
  );
  const dockerHost = `unix://${daemon.socket}`;
  core.info(`hyper serve (pid ${daemon.pid}) answers on ${dockerHost}; its log is ${daemon.log}`);
  core.exportVariable('DOCKER_HOST', dockerHost);
  core.setOutput(Outputs.DockerHost, dockerHost);
  return dockerHost;
}

async function showLog(error: ServiceStartError): Promise<void> {
  await core.group(`Log of ${error.service}`, async () =>
    core.info(error.log || '(the service wrote nothing)'),
  );
}

export async function mainRun(): Promise<void> {
  setCommandLogger((line) => core.debug(line));
  const inputs = getInputs();
  for (const warning of inputs.warnings) core.warning(warning);
  const stateDir = jobStateDir();
  await mkdir(stateDir, { recursive: true });
  saveStateDir(stateDir);
  core.exportVariable('HYPER_STATE_DIR', stateDir);
  if (inputs.volumeSize !== undefined) {
    // Sets it for this process too: later `hyper` steps make their volumes with the same default.
    core.exportVariable('HYPER_VOLUME_SIZE', String(inputs.volumeSize));
  }
  const job = await Job.open(actionHost(stateDir), {
    network: inputs.network,
    accel: inputs.accel,
    volumeSize:
      inputs.volumeSize ??
      (process.env.HYPER_VOLUME_SIZE ? defaultVolumeSize(process.env.HYPER_VOLUME_SIZE) : undefined),
    registry: { registryMirror: inputs.registryMirror, insecureRegistries: inputs.insecureRegistries },
    templates: inputs.templates,
  });
  for (const warning of job.warnings) core.warning(warning);
  await job.begin();
  // A later `hyper run` step joins the job network; these say how to make it if it has to.
  core.exportVariable('HYPER_NETWORK', inputs.network.mode);
  core.exportVariable('HYPER_EGRESS', inputs.network.egress);
  if (inputs.network.allow.length) core.exportVariable('HYPER_EGRESS_ALLOW', inputs.network.allow.join(','));
  if (inputs.network.subnet) core.exportVariable('HYPER_SUBNET', inputs.network.subnet);
  core.exportVariable('HYPER_TEMPLATES', inputs.templates);

  if (inputs.accel !== 'tcg' && process.env.GITHUB_ACTIONS === 'true') {
    core.info(await core.group('Enable KVM', enableKvm));
  }
  const host = await core.group('Install host tools and guest bundle', () =>
    job.prepare(
      { info: core.info, warn: core.warning },
      {
        repository: process.env.GITHUB_ACTION_REPOSITORY,
        tag: process.env.GITHUB_ACTION_REF,
        token: inputs.githubToken,
      },
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
      ? await core.group('Restore the image cache', () => restoreImageCache(imageNames, host.cacheDir))
      : undefined;
    const checkpointCache = inputs.checkpoint ? await checkpointKeys(inputs.checkpoint.key, host) : undefined;
    let checkpoints: RestoredCheckpoints | undefined;
    if (checkpointCache) {
      checkpoints = await core.group('Restore the checkpoint cache', () =>
        restoreCheckpoints(checkpointCache, host.cacheDir),
      );
    }
    try {
      statuses = await core.group(`Start ${serviceCount} service(s)`, () =>
        job.up(
          inputs.plan,
          {
            waitTimeoutMs: inputs.waitTimeoutMs,
            baseDir: process.env.GITHUB_WORKSPACE ?? process.cwd(),
            labels: { job: `${process.env.GITHUB_RUN_ID ?? ''}-${process.env.GITHUB_JOB ?? ''}` },
            ...(checkpoints ? { checkpoints: checkpoints.files } : {}),
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
        templates: statuses.flatMap((s) => (s.serviceTemplate ? [s.serviceTemplate] : [])),
        ...(restoredKey ? { restoredKey } : {}),
      });
    }
  }
  core.setOutput(Outputs.Services, JSON.stringify(servicesContext(statuses)));
  const network = await job.networkMode();
  if (network) core.setOutput(Outputs.Network, network);
  for (const [name, value] of Object.entries(portVariables(statuses))) core.exportVariable(name, value);
  await writeSummary(statuses);
  const dockerHost = inputs.dockerApi ? await serveDockerApi(stateDir) : undefined;
  // Last word before the job's steps run: every service is still up.
  await job.checkStillRunning(statuses).catch(async (error: unknown) => {
    if (error instanceof ServiceStartError) await showLog(error);
    throw error;
  });
  saveMainDone();
  core.info(
    `hyper is ready (accel ${host.accel}, guest bundle ${host.bundle.version}, ${statuses.length} service(s)${dockerHost ? `, Docker API on ${dockerHost}` : ''})`,
  );
}
