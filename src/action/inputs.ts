import * as core from '@actions/core';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAccelChoice, type AccelChoice } from '../install/accel.js';
import { networkSettings, NetworkError, splitList, type NetworkSettings } from '../network/settings.js';
import { composeProfiles, isComposeFile, loadProject } from '../spec/project.js';
import { validatePlan } from '../spec/plan.js';
import { parseServicesInput } from '../spec/services-input.js';
import { parseVolumeSize } from '../spec/units.js';
import { snapshotNameProblem } from '../engine/snapshots.js';
import { parseTemplateMode, type TemplateMode } from '../engine/settings.js';
import type { ContainerSpec } from '../spec/container.js';
import { SpecError } from '../spec/container.js';
import { Inputs, KEEP_ON_FAILURE, type KeepOnFailure } from './constants.js';

export interface ActionInputs {
  accel: AccelChoice;
  /** The services in boot order: waves of services that can start together. */
  plan: ContainerSpec[][];
  waitTimeoutMs: number;
  registryMirror: string | undefined;
  insecureRegistries: string[];
  githubToken: string | undefined;
  /** Keep blobs and root filesystems across runs with @actions/cache. */
  cache: boolean;
  /** The size new volumes get (bytes), when the input sets one. */
  volumeSize: number | undefined;
  /** What to keep as an artifact when the job fails. */
  keepOnFailure: KeepOnFailure;
  /** Carry snapshot `name` of each service across runs under this cache key. */
  checkpoint: { key: string; name: string } | undefined;
  network: NetworkSettings;
  /** Serve the Docker Engine API over the job's VMs (`hyper serve`) for later steps. */
  dockerApi: boolean;
  /** Whether VMs start as clones of boot templates. */
  templates: TemplateMode;
  /** What the compose file asked for that is accepted and ignored, a line each. */
  warnings: string[];
}

const DEFAULT_WAIT_TIMEOUT_S = 300;
const DEFAULT_CHECKPOINT_NAME = 'ready';

/** Reads and validates every input before anything happens. */
export function getInputs(): ActionInputs {
  const accel = parseAccelChoice(core.getInput(Inputs.Accel), `input "${Inputs.Accel}"`);
  const services: ContainerSpec[] = [];
  const servicesText = core.getInput(Inputs.Services);
  if (servicesText.trim()) services.push(...parseServicesInput(servicesText, `input "${Inputs.Services}"`));
  // One file, or several merged in order (one per line), as `docker compose -f a.yml -f b.yml` merges them.
  const composeFiles = core
    .getInput(Inputs.ComposeFile)
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const warnings: string[] = [];
  let fileSubnet: string | undefined;
  if (composeFiles.length > 0) {
    const inputs = composeFiles.map((name) => {
      const file = path.resolve(process.env.GITHUB_WORKSPACE ?? process.cwd(), name);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error: unknown) {
        throw new SpecError(
          `input "${Inputs.ComposeFile}": cannot read ${file}: ${(error as Error).message}`,
        );
      }
      if (composeFiles.length > 1 && !isComposeFile(text))
        throw new SpecError(
          `input "${Inputs.ComposeFile}": ${file} has no top-level services: map; only compose files can be merged`,
        );
      return { text, file };
    });
    const profilesText = core.getInput(Inputs.ComposeProfiles);
    const project = loadProject(inputs, (p) => readFileSync(p), process.env, {
      profiles: profilesText ? splitList(profilesText) : composeProfiles(process.env),
    });
    warnings.push(...project.warnings);
    services.push(...project.services);
    fileSubnet = project.subnet;
  }
  const plan = validatePlan(services);
  const waitText = core.getInput(Inputs.WaitTimeout) || String(DEFAULT_WAIT_TIMEOUT_S);
  if (!/^\d+$/.test(waitText) || Number(waitText) < 1) {
    throw new SpecError(`input "${Inputs.WaitTimeout}": "${waitText}" is not a number of seconds`);
  }
  const volumeSizeText = core.getInput(Inputs.VolumeSize);
  let volumeSize: number | undefined;
  try {
    volumeSize = volumeSizeText ? parseVolumeSize(volumeSizeText) : undefined;
  } catch (error: unknown) {
    throw new SpecError(`input "${Inputs.VolumeSize}": ${(error as Error).message}`);
  }
  const checkpointKey = core.getInput(Inputs.CheckpointKey);
  const checkpointName = core.getInput(Inputs.CheckpointName) || DEFAULT_CHECKPOINT_NAME;
  const nameProblem = snapshotNameProblem(checkpointName);
  if (nameProblem) throw new SpecError(`input "${Inputs.CheckpointName}": ${nameProblem}`);
  if (checkpointKey.includes(',') || checkpointKey.length > 400) {
    throw new SpecError(
      `input "${Inputs.CheckpointKey}": a cache key has no commas and at most 400 characters here`,
    );
  }
  const keepOnFailure = getKeepOnFailure();
  let network: NetworkSettings;
  try {
    network = networkSettings(
      {
        mode: core.getInput(Inputs.Network),
        egress: core.getInput(Inputs.Egress),
        allow: splitList(core.getInput(Inputs.EgressAllow)),
        subnet: core.getInput(Inputs.Subnet) || fileSubnet,
      },
      {
        mode: `input "${Inputs.Network}"`,
        egress: `input "${Inputs.Egress}"`,
        allow: `input "${Inputs.EgressAllow}"`,
        subnet: `input "${Inputs.Subnet}"`,
      },
    );
  } catch (error: unknown) {
    if (error instanceof NetworkError) throw new SpecError(error.message);
    throw error;
  }
  return {
    accel,
    plan,
    waitTimeoutMs: Number(waitText) * 1000,
    registryMirror: core.getInput(Inputs.RegistryMirror) || undefined,
    insecureRegistries: core
      .getInput(Inputs.InsecureRegistries)
      .split(/[\s,]+/)
      .filter(Boolean),
    githubToken: core.getInput(Inputs.GithubToken) || undefined,
    cache: parseBoolean(core.getInput(Inputs.Cache), true, Inputs.Cache),
    volumeSize,
    keepOnFailure,
    checkpoint: checkpointKey ? { key: checkpointKey, name: checkpointName } : undefined,
    network,
    dockerApi: parseBoolean(core.getInput(Inputs.DockerApi), false, Inputs.DockerApi),
    templates: parseTemplateMode(core.getInput(Inputs.Templates) || 'auto', `input "${Inputs.Templates}"`),
    warnings,
  };
}

/** A boolean input in the forms the runner's own inputs accept (YAML 1.2 core schema); empty is the default. */
function parseBoolean(text: string, fallback: boolean, name: string): boolean {
  if (text === '') return fallback;
  if (['true', 'True', 'TRUE'].includes(text)) return true;
  if (['false', 'False', 'FALSE'].includes(text)) return false;
  throw new SpecError(`input "${name}": "${text}" is not a boolean; use true or false`);
}

/** The keep-on-failure input; the post step reads it too (inputs reach both steps). */
export function getKeepOnFailure(): KeepOnFailure {
  const text = core.getInput(Inputs.KeepOnFailure) || 'false';
  const mode = KEEP_ON_FAILURE.find((m) => m === text);
  if (!mode) {
    throw new SpecError(
      `input "${Inputs.KeepOnFailure}": "${text}" is not one of ${KEEP_ON_FAILURE.join(', ')}`,
    );
  }
  return mode;
}
