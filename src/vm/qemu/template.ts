// Boot templates: a guest booted once up to where its init waits for a
// service, saved as a RAM file plus its device state. Every VM with the same
// machine shape then starts as a copy-on-write clone of it (machine.ts).
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import path from 'node:path';
import { fileDigest } from '../../files.js';
import { programPath, trimOutput } from '../../process/run.js';
import type { Accel, GuestBundle, MachineSpec } from '../hypervisor.js';
import { vmPaths } from '../paths.js';
import { isAlive, readPid, sleep, waitForExit } from '../../process/pids.js';
import { readGuestStatus } from '../status.js';
import { kernelCmdline, qemuArgs } from './args.js';
import { QmpClient } from './qmp.js';
import { knownQemuVersion } from '../../tools/qemu/version.js';
import { machineJail, releaseJail } from './jail.js';
import { cgroupName, controlSocket, machineLimits, qemuNetns, saveState, spawnQemu } from './spawn.js';
import { VmCgroups } from '../../host/cgroups.js';

/** Bumped whenever the template's device layout or the init's wait changes meaning. */
export const TEMPLATE_FORMAT = 2;

/** Everything a template's content depends on. A clone is made only from a template with the same. */
export interface TemplateIdentity {
  format: number;
  /** The guest bundle's recipe hash, and its kernel and initrd as files (size and mtime). */
  bundle: string;
  kernel: string;
  initrd: string;
  /** `qemu --version`'s first line, and the binary as a file. */
  qemu: string;
  accel: Accel;
  /** The CPU the guest sees: QEMU's `max` model under TCG; under KVM the named model, else the host's CPU. */
  cpu: string;
  /** Under KVM, the named model the template is booted with (absent: "-cpu host"). */
  cpuModel?: string;
  cmdline: string;
  memoryMiB: number;
  cpus: number;
  slots: number;
}

/** A template on disk: the guest's RAM and its saved device state. */
export interface BootTemplate {
  dir: string;
  ram: string;
  state: string;
}

/** What a template's meta.json holds: its identity, and the state file's digest to catch damage. */
interface TemplateMeta {
  identity: TemplateIdentity;
  stateBytes: number;
  stateSha256: string;
  ramBytes: number;
  madeMs: number;
}

/** A template as `hyper template ls` shows it. */
export interface TemplateInfo {
  dir: string;
  identity: TemplateIdentity;
  madeMs: number;
  /** What its RAM file takes on disk (it is sparse: the pages the boot touched). */
  diskBytes: number;
  /** Pids of the processes (clones) that map its RAM. */
  usedBy: number[];
}

/**
 * Every file mapped by a process this one can see, with the pids mapping
 * it: a template's RAM file stays while a clone maps it.
 */
export async function mappedFiles(): Promise<Map<string, number[]>> {
  const mapped = new Map<string, number[]>();
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const maps = await readFile(`/proc/${entry}/maps`, 'utf8').catch(() => '');
    for (const line of maps.split('\n')) {
      const at = line.indexOf('/');
      if (at < 0) continue;
      const file = line.slice(at).replace(/ \(deleted\)$/, '');
      const pids = mapped.get(file) ?? [];
      if (!pids.includes(Number(entry))) pids.push(Number(entry));
      mapped.set(file, pids);
    }
  }
  return mapped;
}

export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** Where a host's boot templates are kept, under its cache dir. */
export function bootTemplateDir(cacheDir: string): string {
  return path.join(cacheDir, 'templates', 'boot');
}

/** The directory name for a shape (readable) and identity (hashed). Pure. */
export function templateName(identity: TemplateIdentity): string {
  const digest = createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 16);
  return `${shapeName(identity)}-${digest}`;
}

function shapeName(identity: Pick<TemplateIdentity, 'memoryMiB' | 'cpus' | 'slots' | 'accel'>): string {
  return `${identity.accel}-${identity.memoryMiB}m-${identity.cpus}c-${identity.slots}s`;
}

/** The fields in which two identities differ, for the log. Pure. */
export function identityChanges(was: TemplateIdentity, now: TemplateIdentity): string[] {
  return (Object.keys(now) as (keyof TemplateIdentity)[])
    .filter((key) => String(was[key]) !== String(now[key]))
    .map((key) => `${key} ${String(was[key])} -> ${String(now[key])}`);
}

async function fileIdentity(file: string): Promise<string> {
  const info = await stat(file);
  return `${file}|${info.size}|${info.mtimeMs}`;
}

export async function templateIdentity(
  qemu: string,
  spec: Pick<MachineSpec, 'bundle' | 'accel' | 'cpuModel' | 'memoryMiB' | 'cpus'> & { slots: number },
  hostTscKhz: number,
  hostCpu: string,
): Promise<TemplateIdentity> {
  const binary = (await programPath(qemu)) ?? qemu;
  return {
    format: TEMPLATE_FORMAT,
    bundle: spec.bundle.version,
    kernel: await fileIdentity(spec.bundle.kernel),
    initrd: await fileIdentity(spec.bundle.initrd),
    qemu: `${(await knownQemuVersion(qemu)).text.trim()} (${await fileIdentity(binary)})`,
    accel: spec.accel,
    cpu: spec.accel !== 'kvm' ? 'max' : spec.cpuModel ? `model ${spec.cpuModel}` : hostCpu,
    ...(spec.accel === 'kvm' && spec.cpuModel ? { cpuModel: spec.cpuModel } : {}),
    cmdline: kernelCmdline(spec.accel, hostTscKhz),
    memoryMiB: spec.memoryMiB,
    cpus: spec.cpus,
    slots: spec.slots,
  };
}

/** The machine a template is booted as: the shape, no disks, no network, no settings. */
function templateSpec(identity: TemplateIdentity, bundle: GuestBundle, dir: string): MachineSpec {
  return {
    name: 'boot-template',
    dir,
    accel: identity.accel,
    ...(identity.cpuModel ? { cpuModel: identity.cpuModel } : {}),
    memoryMiB: identity.memoryMiB,
    cpus: identity.cpus,
    bundle,
    rootDisk: '',
    guestFiles: [],
    ports: [],
    slots: identity.slots,
  };
}

/** The boot templates kept under one directory (the cache's `templates/boot`). */
export class TemplateStore {
  constructor(
    readonly root: string,
    private readonly qemu: string,
    /** False: template machines run without their jail (HYPER_JAIL=off). */
    private readonly confine = true,
    /** Where the template machines' cgroups go (HYPER_CGROUP_PARENT). */
    private readonly cgroups = new VmCgroups(),
  ) {}

  /**
   * The template for `identity`, made first when there is none (or, with
   * `refresh`, always). Made under a lock: two processes that need the same
   * template wait for one to make it. A damaged template is removed, and
   * the error says so; the caller then boots in full.
   */
  async obtain(
    identity: TemplateIdentity,
    bundle: GuestBundle,
    options: { refresh: boolean; log: (line: string) => void },
  ): Promise<BootTemplate> {
    const name = templateName(identity);
    const dir = path.join(this.root, name);
    await mkdir(this.root, { recursive: true });
    if (!options.refresh) {
      const found = await this.check(dir, identity);
      if (found) return found;
    }
    return this.withLock(path.join(this.root, `${name}.lock`), async () => {
      // Another process may have made it while this one waited.
      if (!options.refresh) {
        const found = await this.check(dir, identity);
        if (found) return found;
      }
      await this.tellWhy(identity, options);
      const started = Date.now();
      await this.make(dir, identity, bundle);
      options.log(
        `made a boot template for ${describeShape(identity)} in ${Date.now() - started} ms (${dir})`,
      );
      const made = await this.check(dir, identity);
      if (!made) throw new TemplateError(`the boot template just made in ${dir} does not check out`);
      // Those this one replaces go once no clone maps them.
      for (const other of await this.list())
        if (other.dir !== dir && shapeName(other.identity) === shapeName(identity) && !other.usedBy.length)
          await rm(other.dir, { recursive: true, force: true });
      return made;
    });
  }

  /** The template in `dir` when it is whole and made for `identity`; a damaged one is removed, and the error says why. */
  private async check(dir: string, identity: TemplateIdentity): Promise<BootTemplate | undefined> {
    let meta: TemplateMeta;
    try {
      meta = JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')) as TemplateMeta;
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return this.refuse(dir, `its meta.json cannot be read (${(error as Error).message})`);
    }
    const template = { dir, ram: path.join(dir, 'ram'), state: path.join(dir, 'state') };
    const changes = meta.identity ? identityChanges(meta.identity, identity) : ['no identity'];
    if (changes.length) return this.refuse(dir, `it was made for another machine (${changes.join('; ')})`);
    const ram = await stat(template.ram).catch(() => undefined);
    if (ram?.size !== meta.ramBytes)
      return this.refuse(dir, `its RAM file holds ${ram?.size ?? 'no'} bytes, not ${meta.ramBytes}`);
    const state = await stat(template.state).catch(() => undefined);
    if (state?.size !== meta.stateBytes || (await fileDigest(template.state)) !== meta.stateSha256)
      return this.refuse(dir, 'its device state is not what was saved (digest differs)');
    return template;
  }

  private async refuse(dir: string, why: string): Promise<never> {
    // Running clones keep their mapping of the RAM file: removing the name does not touch them.
    await rm(dir, { recursive: true, force: true });
    throw new TemplateError(`the boot template ${dir} was refused and removed: ${why}`);
  }

  /** Says why a template is being made: none yet for this shape, or the one there was made for another machine. */
  private async tellWhy(
    identity: TemplateIdentity,
    options: { refresh: boolean; log: (line: string) => void },
  ): Promise<void> {
    if (options.refresh) {
      options.log(`making a new boot template for ${describeShape(identity)} (refresh asked for)`);
      return;
    }
    for (const other of await this.list()) {
      if (shapeName(other.identity) !== shapeName(identity)) continue;
      const changes = identityChanges(other.identity, identity);
      if (changes.length)
        options.log(
          `the boot template ${other.dir} was made for another machine (${changes.join('; ')}); making one for this one`,
        );
    }
  }

  /** Every template here, with its identity and the pids of the VMs that map its RAM. */
  async list(): Promise<TemplateInfo[]> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    const mapped = await mappedFiles();
    const found: TemplateInfo[] = [];
    for (const name of names) {
      const dir = path.join(this.root, name);
      try {
        const meta = JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')) as TemplateMeta;
        const ram = path.join(dir, 'ram');
        const usage = await stat(ram);
        found.push({
          dir,
          identity: meta.identity,
          madeMs: meta.madeMs,
          diskBytes: usage.blocks * 512,
          usedBy: mapped.get(ram) ?? [],
        });
      } catch {
        // A lock file, a template being made, or one damaged: not listed.
      }
    }
    return found;
  }

  /**
   * Removes the templates no process maps (VMs started from them run on;
   * the rest are made again when needed), and what was left half-made by a
   * process that died. `keep` is spared.
   */
  async prune(keep?: string): Promise<string[]> {
    const removed: string[] = [];
    for (const template of await this.list()) {
      if (template.dir === keep || template.usedBy.length) continue;
      await rm(template.dir, { recursive: true, force: true });
      removed.push(template.dir);
    }
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      const making = /\.making-(\d+)$/.exec(name);
      if (making && !isAlive(Number(making[1]))) {
        await rm(path.join(this.root, name), { recursive: true, force: true });
        removed.push(path.join(this.root, name));
      }
    }
    return removed;
  }

  /** Boots the template machine, waits for its init to stop at the template point, and saves it. */
  private async make(dir: string, identity: TemplateIdentity, bundle: GuestBundle): Promise<void> {
    const work = `${dir}.making-${process.pid}`;
    await rm(work, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    const spec = templateSpec(identity, bundle, work);
    const paths = vmPaths(work);
    const ram = path.join(work, 'ram');
    const state = path.join(work, 'state');
    const tsc = /tsc_early_khz=(\d+)/.exec(identity.cmdline)?.[1];
    const jail = await machineJail(this.qemu, path.join(work, 'jail'), this.confine);
    const cgroup = this.confine
      ? await this.cgroups.make(cgroupName('template', work), machineLimits(spec))
      : { reason: 'HYPER_JAIL=off' };
    const log = await open(paths.qemuLog, 'a');
    const launch = { kind: 'template', ram } as const;
    const child = spawnQemu(this.qemu, qemuArgs(spec, tsc ? Number(tsc) : undefined, launch, jail), {
      output: log.fd,
      procs: 'procs' in cgroup ? cgroup.procs : [],
      netns: qemuNetns(spec, launch, jail),
      control: true,
    });
    let exited = false;
    child.on('exit', () => (exited = true));
    child.on('error', () => (exited = true));
    // Open until the template is saved: the guest's wait is a read on it (guest/hyper-resume.c).
    let control: Socket | undefined;
    try {
      control = controlSocket(child);
      await this.waitForTemplatePoint(paths, () => exited);
      const qmp = await QmpClient.connect(paths.qmp, 5000);
      try {
        await qmp.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'x-ignore-shared', state: true }],
        });
        await qmp.execute('stop');
        await saveState(qmp, jail, state, (machine) => waitForMigration(machine, TEMPLATE_SAVE_TIMEOUT_MS));
        await qmp.execute('quit').catch(() => undefined);
      } finally {
        qmp.close();
      }
      const pid = await readPid(paths.pid);
      if (pid !== undefined && !(await waitForExit(pid, work, 10000)))
        throw new TemplateError('the template machine did not quit after saving');
      const meta: TemplateMeta = {
        identity,
        stateBytes: (await stat(state)).size,
        stateSha256: await fileDigest(state),
        ramBytes: (await stat(ram)).size,
        madeMs: Date.now(),
      };
      await writeFile(path.join(work, 'meta.json'), JSON.stringify(meta, null, 2));
      // Only what a clone needs is kept; the rest was the template machine's own.
      await releaseJail(jail.dir);
      for (const file of [
        paths.qmp,
        paths.agent,
        paths.relay,
        paths.pid,
        paths.status,
        paths.serviceLog,
        jail.dir,
      ])
        await rm(file, { recursive: true, force: true });
      await rename(work, dir);
    } catch (error: unknown) {
      const console = await readFile(paths.console, 'utf8').catch(() => '');
      const qemuLog = await readFile(paths.qemuLog, 'utf8').catch(() => '');
      throw new TemplateError(
        `could not make a boot template: ${(error as Error).message}${tailOf(qemuLog)}${tailOf(console)}`,
      );
    } finally {
      await log.close();
      if (!exited) child.kill('SIGKILL');
      control?.destroy();
      await waitForEnd(() => exited);
      await this.cgroups.remove(cgroupName('template', work));
      await releaseJail(jail.dir);
      await rm(work, { recursive: true, force: true });
    }
  }

  private async waitForTemplatePoint(
    paths: ReturnType<typeof vmPaths>,
    exited: () => boolean,
  ): Promise<void> {
    const deadline = Date.now() + TEMPLATE_BOOT_TIMEOUT_MS;
    for (;;) {
      const status = await readGuestStatus(paths.status);
      if (status.failure) throw new TemplateError(`the guest init failed: ${status.failure}`);
      if (status.template) return;
      if (exited()) throw new TemplateError('QEMU exited while the template booted');
      if (Date.now() > deadline)
        throw new TemplateError(`the template did not reach its wait within ${TEMPLATE_BOOT_TIMEOUT_MS} ms`);
      await sleep(25);
    }
  }

  /** Holds `lock` (a file with the holder's pid) while `work` runs; a holder that died leaves it to the next. */
  private async withLock<T>(lock: string, work: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + TEMPLATE_LOCK_TIMEOUT_MS;
    for (;;) {
      try {
        const handle = await open(lock, 'wx');
        await handle.writeFile(String(process.pid));
        await handle.close();
        break;
      } catch (error: unknown) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const holder = await readPid(lock);
        if (holder !== undefined && !isAlive(holder)) {
          await rm(lock, { force: true });
          continue;
        }
        if (Date.now() > deadline)
          throw new TemplateError(
            `another hyper process (pid ${holder}) is still making this boot template (${lock})`,
          );
        await sleep(100);
      }
    }
    try {
      return await work();
    } finally {
      await rm(lock, { force: true });
    }
  }
}

/** Waits (10 s at most) for a child hyper started to have ended. */
async function waitForEnd(exited: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!exited() && Date.now() < deadline) await sleep(10);
}

/** Waits for an outgoing or incoming migration to complete; a failed one throws with QEMU's reason. */
export async function waitForMigration(qmp: QmpClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = (await qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled')
      throw new TemplateError(`migration ${info.status}: ${info['error-desc'] ?? 'no reason given'}`);
    if (Date.now() > deadline)
      throw new TemplateError(
        `migration not done within ${timeoutMs} ms (last status ${info.status ?? 'none'})`,
      );
    await sleep(5);
  }
}

function describeShape(identity: TemplateIdentity): string {
  return `${identity.memoryMiB} MiB, ${identity.cpus} CPU${identity.cpus === 1 ? '' : 's'}, ${identity.accel.toUpperCase()}`;
}

function tailOf(text: string): string {
  return text.trim() ? `\n${trimOutput(text, 8)}` : '';
}

/** A template boot is a full boot under TCG, on a machine that may be busy. */
const TEMPLATE_BOOT_TIMEOUT_MS = 60_000;
const TEMPLATE_SAVE_TIMEOUT_MS = 30_000;
/** Waiting for another process's template: its boot plus its save, with room. */
const TEMPLATE_LOCK_TIMEOUT_MS = 120_000;
