import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../errors.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { MemberRequest, MemberView, NetworkRecord } from '../network/job.js';
import type { MountDisk, MountShare } from '../storage/mounts.js';
import type { GuestFile, MachineSpec } from '../vm/hypervisor.js';
import { vmPaths } from '../vm/paths.js';
import { vmDir, type BootContext } from './context.js';
import { newVmId, writeRecord, type VmRecord } from './record.js';
import type { ServiceTemplateKey } from './template-key.js';
import { runSteps, type Step, type Together } from './steps.js';

/** A VM being made: what the steps so far have settled. */
export interface Draft {
  readonly job: BootContext;
  readonly name: string;
  readonly dir: string;
  /** Progress for the user (the network chosen, a root filesystem built). */
  readonly log: (line: string) => void;
  /** Set once this draft made the directory: only then does undo remove it. */
  claimed?: boolean;
  network?: NetworkRecord;
  /** Set when this draft put the service on the network (not when `up` had planned it there). */
  joined?: boolean;
  view?: MemberView;
  disks: MountDisk[];
  /** Host directories shared live (bind mounts, where the host can). */
  shares: MountShare[];
  /** Paths in the container where the Docker API that made it is served (guest/hyper-relay.c). */
  relaySockets: string[];
  guestFiles: GuestFile[];
  record?: VmRecord;
  /** The service template key worked out for it (run.ts), kept in the record. */
  templateKey?: ServiceTemplateKey;
}

export function newDraft(
  job: BootContext,
  name: string,
  log: (line: string) => void = () => undefined,
): Draft {
  return { job, name, dir: vmDir(job, name), log, disks: [], shares: [], relaySockets: [], guestFiles: [] };
}

/** What the record keeps beyond the machine: where the VM came from and how to enter it. */
export interface RecordFields {
  image: string;
  imageDigest: string;
  imageConfigDigest: string;
  imageBlobs: string[];
  user: string;
  workdir: string;
  labels: Record<string, string>;
  healthcheck?: HealthcheckSpec | undefined;
  memoryMiB: number;
  cpus: number;
  /** The service's command and environment as the guest gets them. */
  argv?: string[] | undefined;
  env?: string[] | undefined;
  networks?: Record<string, { aliases: string[] }> | undefined;
  /** How long a stop waits before it kills, when the service set it (compose stop_grace_period). */
  stopGraceMs?: number | undefined;
  restart?: VmRecord['restart'] | undefined;
  /** Compose lifecycle hooks. */
  postStart?: VmRecord['postStart'] | undefined;
  preStop?: VmRecord['preStop'] | undefined;
}

/** A record's fields that are not its machine: what an export carries. Pure. */
export function recordFields(record: VmRecord): RecordFields {
  return {
    image: record.image,
    imageDigest: record.imageDigest,
    imageConfigDigest: record.imageConfigDigest,
    imageBlobs: record.imageBlobs,
    user: record.user,
    workdir: record.workdir,
    labels: record.labels,
    ...(record.healthcheck ? { healthcheck: record.healthcheck } : {}),
    memoryMiB: record.machine.memoryMiB,
    cpus: record.machine.cpus,
    ...(record.argv ? { argv: record.argv } : {}),
    ...(record.env ? { env: record.env } : {}),
    ...(record.stopGraceMs !== undefined ? { stopGraceMs: record.stopGraceMs } : {}),
    ...(record.restart ? { restart: record.restart } : {}),
    ...(record.postStart ? { postStart: record.postStart } : {}),
    ...(record.preStop ? { preStop: record.preStop } : {}),
  };
}

/** The directory: claiming it is what makes a name taken. */
export function claimStep(nameInUse: (name: string) => string): Step<Draft> {
  return {
    name: 'claim the VM directory',
    async run(draft) {
      await mkdir(path.dirname(draft.dir), { recursive: true });
      try {
        await mkdir(draft.dir);
      } catch (error: unknown) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST')
          throw new HyperError(nameInUse(draft.name), { kind: 'Conflict' });
        throw error;
      }
      draft.claimed = true;
    },
    async undo(draft) {
      if (draft.claimed) await rm(draft.dir, { recursive: true, force: true });
    },
  };
}

/** A place on the job network (kept when `up` had planned it: `up` takes it off if the boot fails). */
export function networkStep(request: (draft: Draft) => MemberRequest): Step<Draft> {
  return {
    name: 'join the job network',
    async run(draft) {
      const { job } = draft;
      const { network, joined } = await job.network.memberOf(
        job.stateDir,
        job.settings.network,
        request(draft),
        {
          info: draft.log,
          warn: (line) => draft.log(`warning: ${line}`),
        },
      );
      draft.joined = joined;
      draft.network = network;
      draft.view = job.network.memberView(network, draft.name, job.bundle.connect);
    },
    async undo(draft) {
      if (draft.joined) await draft.job.network.leaveNetwork(draft.job.stateDir, [draft.name]);
    },
  };
}

/** vm.json: from here the VM is listed, and `hyper rm` removes it. */
export function recordStep(fields: RecordFields, extra: (draft: Draft) => Promise<void>): Step<Draft> {
  return {
    name: 'write the record',
    async run(draft) {
      const view = requireView(draft);
      const record: VmRecord = {
        id: newVmId(),
        name: draft.name,
        image: fields.image,
        imageDigest: fields.imageDigest,
        imageConfigDigest: fields.imageConfigDigest,
        imageBlobs: fields.imageBlobs,
        createdAt: new Date().toISOString(),
        machine: machineSpec(draft, fields, view),
        ports: view.published,
        user: fields.user,
        workdir: fields.workdir,
        labels: fields.labels,
        disks: draft.disks,
        ...(fields.healthcheck ? { healthcheck: fields.healthcheck } : {}),
        ...(fields.argv ? { argv: fields.argv } : {}),
        ...(fields.env ? { env: fields.env } : {}),
        ...(fields.networks ? { networks: fields.networks } : {}),
        ...(fields.stopGraceMs !== undefined ? { stopGraceMs: fields.stopGraceMs } : {}),
        ...(fields.restart && fields.restart.policy !== 'no' ? { restart: fields.restart } : {}),
        ...(fields.postStart?.length ? { postStart: fields.postStart } : {}),
        ...(fields.preStop?.length ? { preStop: fields.preStop } : {}),
      };
      draft.record = record;
      await extra(draft);
      await writeRecord(record);
    },
  };
}

/** QEMU started and the guest's service started (it may have run to its end already). */
export function bootStep(bootTimeoutMs: number): Step<Draft> {
  return {
    name: 'boot',
    async run(draft) {
      const record = requireRecord(draft);
      const { hypervisor } = draft.job;
      const started = Date.now();
      await writeFile(vmPaths(draft.dir).status, '');
      const { origin } = await hypervisor.start(record.machine, {
        template: draft.job.settings.templates,
        log: draft.log,
      });
      record.origin = origin;
      await hypervisor.waitUntilRunning(record.machine, bootTimeoutMs);
      record.bootMs = Date.now() - started;
      record.startedAt = new Date(started).toISOString();
      await writeRecord(record);
    },
    async undo(draft) {
      await draft.job.hypervisor.kill({ dir: draft.dir });
    },
  };
}

/** Runs a create list; the record it wrote is the result. */
export async function createVm(
  draft: Draft,
  steps: readonly (Step<Draft> | Together<Draft>)[],
): Promise<VmRecord> {
  await runSteps(steps, draft, (line) => draft.log(`warning: ${line}`));
  return requireRecord(draft);
}

function requireView(draft: Draft): MemberView {
  if (!draft.view) throw new HyperError(`${draft.name}: the network step did not run before the record`);
  return draft.view;
}

function requireRecord(draft: Draft): VmRecord {
  if (!draft.record) throw new HyperError(`${draft.name}: no record was written`);
  return draft.record;
}

/** The hypervisor's view of the VM, on this host's bundle and accelerator. */
function machineSpec(draft: Draft, fields: RecordFields, view: MemberView): MachineSpec {
  const { job, dir } = draft;
  const spec: MachineSpec = {
    name: draft.name,
    dir,
    accel: job.accel,
    ...(job.accel === 'kvm' && job.cpuModel ? { cpuModel: job.cpuModel } : {}),
    memoryMiB: fields.memoryMiB,
    cpus: fields.cpus,
    bundle: job.bundle,
    rootDisk: vmPaths(dir).rootDisk,
    guestFiles: draft.guestFiles,
    network: view.machine,
    ports: view.forwards.map((p) => ({
      protocol: p.protocol,
      hostIp: p.hostIp,
      hostPort: p.hostPort,
      guestPort: p.containerPort,
    })),
    disks: draft.disks.map((d) => ({
      serial: d.serial,
      path: d.path,
      readOnly: d.readOnly,
      ...(d.image ? { format: 'raw' as const } : {}),
    })),
    ...(draft.shares.length > 0
      ? { shares: draft.shares.map((s) => ({ tag: s.tag, source: s.source, readOnly: s.readOnly })) }
      : {}),
    ...(draft.relaySockets.length > 0 ? { relaySockets: [...draft.relaySockets] } : {}),
  };
  const slots = job.hypervisor.templateSlots(spec);
  return slots === undefined ? spec : { ...spec, slots, controlReader: true };
}
