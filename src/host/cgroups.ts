// A cgroup per VM, so that what a guest makes its QEMU do (grow its memory,
// spawn helpers, spin its vCPUs) stays within bounds on the host. Made under
// `hyper/` at the top of each hierarchy, as Docker's cgroupfs driver makes
// `docker/`: cgroup v2, or the v1 hierarchies of the memory, pids and cpu
// controllers where the host has them there (hybrid hosts).
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The controllers a VM's cgroup bounds. */
export type Controller = 'memory' | 'pids' | 'cpu';
const CONTROLLERS: readonly Controller[] = ['memory', 'pids', 'cpu'];

/** Where each controller is: the mount point of the hierarchy that has it, and whether that is v2. */
export type CgroupLayout = Partial<Record<Controller, { mount: string; v2: boolean }>>;

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** cgroup v2's scale: 1-10000, 100 the default (v1's cpu.shares is this × 1024 / 100). */
  cpuWeight: number;
}

/** The directory under each hierarchy's top that holds the VMs' cgroups. */
export const CGROUP_PARENT = 'hyper';

/**
 * The cgroup mounts in a /proc/self/mountinfo text: which v1 hierarchy holds
 * each controller, and the v2 mount with the controllers its
 * cgroup.controllers lists (`v2Controllers`, read by the caller). A
 * controller in a v1 hierarchy is not in v2. Pure.
 */
export function cgroupLayout(mountinfo: string, v2Controllers: (mount: string) => string[]): CgroupLayout {
  const layout: CgroupLayout = {};
  let unified: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const mount = before.split(' ')[4];
    const [fstype, , superOptions = ''] = after.split(' ');
    if (!mount) continue;
    if (fstype === 'cgroup2') unified ??= mount;
    if (fstype !== 'cgroup') continue;
    const options = superOptions.split(',');
    for (const controller of CONTROLLERS)
      if (options.includes(controller)) layout[controller] ??= { mount, v2: false };
  }
  if (unified !== undefined) {
    const available = v2Controllers(unified);
    for (const controller of CONTROLLERS)
      if (!layout[controller] && available.includes(controller))
        layout[controller] = { mount: unified, v2: true };
  }
  return layout;
}

/** One write that sets a limit: the cgroup file and its value. */
export interface CgroupWrite {
  file: string;
  value: string;
}

/** The directories of cgroup `name` (one per hierarchy) and the limit writes in each. Pure. */
export function cgroupPlan(
  layout: CgroupLayout,
  name: string,
  limits: CgroupLimits,
): { dirs: string[]; writes: CgroupWrite[] } {
  const dirs: string[] = [];
  const writes: CgroupWrite[] = [];
  for (const controller of CONTROLLERS) {
    const place = layout[controller];
    if (!place) continue;
    const dir = path.join(place.mount, CGROUP_PARENT, name);
    if (!dirs.includes(dir)) dirs.push(dir);
    const [file, value] = limitFile(controller, place.v2, limits);
    writes.push({ file: path.join(dir, file), value });
  }
  return { dirs, writes };
}

function limitFile(controller: Controller, v2: boolean, limits: CgroupLimits): [string, string] {
  if (controller === 'memory')
    return [v2 ? 'memory.max' : 'memory.limit_in_bytes', String(limits.memoryBytes)];
  if (controller === 'pids') return ['pids.max', String(limits.pids)];
  return v2
    ? ['cpu.weight', String(limits.cpuWeight)]
    : ['cpu.shares', String(Math.round((limits.cpuWeight * 1024) / 100))];
}

/** What makeCgroup gives: the cgroup.procs files a process joins, or why none could be made. */
export type VmCgroup = { procs: string[]; dirs: string[] } | { reason: string };

let layoutRead: Promise<CgroupLayout> | undefined;

function hostLayout(): Promise<CgroupLayout> {
  layoutRead ??= (async () => {
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
    const controllers = new Map<string, string[]>();
    for (const line of mountinfo.split('\n')) {
      const [before, after] = line.split(' - ');
      const mount = before?.split(' ')[4];
      if (mount && after?.startsWith('cgroup2 '))
        controllers.set(
          mount,
          (await readFile(path.join(mount, 'cgroup.controllers'), 'utf8').catch(() => ''))
            .trim()
            .split(/\s+/),
        );
    }
    return cgroupLayout(mountinfo, (mount) => controllers.get(mount) ?? []);
  })();
  return layoutRead;
}

/**
 * Makes cgroup `name` with `limits` in every hierarchy that has one of the
 * controllers, and says which cgroup.procs files a process joins. Never
 * throws: a host where none can be made (not root, no controller, a
 * read-only cgroupfs) gets the reason, and whatever was made is removed.
 */
export async function makeCgroup(name: string, limits: CgroupLimits): Promise<VmCgroup> {
  if (process.getuid?.() !== 0) return { reason: 'hyper is not running as root' };
  const layout = await hostLayout();
  const plan = cgroupPlan(layout, name, limits);
  if (plan.dirs.length === 0)
    return { reason: 'the host mounts no cgroup hierarchy with the memory, pids or cpu controller' };
  try {
    for (const dir of plan.dirs) {
      const parent = path.dirname(dir);
      await mkdir(parent, { recursive: true });
      if (await isV2(dir)) await enableControllers(parent, layout);
      // Made anew (a left one is empty, or holds what kill left): a sweep spares what is under a minute old.
      await rmdir(dir).catch(() => undefined);
      await mkdir(dir, { recursive: true });
    }
    for (const write of plan.writes) await writeFile(write.file, write.value);
    return { procs: plan.dirs.map((dir) => path.join(dir, 'cgroup.procs')), dirs: plan.dirs };
  } catch (error: unknown) {
    await removeCgroup(name);
    return { reason: `cannot make cgroup ${CGROUP_PARENT}/${name}: ${(error as Error).message}` };
  }
}

async function isV2(dir: string): Promise<boolean> {
  const layout = await hostLayout();
  return Object.values(layout).some((place) => place.v2 && dir.startsWith(`${place.mount}/`));
}

/** In v2 a cgroup hands its controllers to its children only when its parent's subtree_control lists them. */
async function enableControllers(parent: string, layout: CgroupLayout): Promise<void> {
  const wanted = CONTROLLERS.filter((controller) => layout[controller]?.v2);
  const top = path.dirname(parent);
  const enabled = (await readFile(path.join(top, 'cgroup.subtree_control'), 'utf8').catch(() => '')).split(
    /\s+/,
  );
  const missing = wanted.filter((controller) => !enabled.includes(controller));
  if (missing.length)
    await writeFile(path.join(top, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
  await writeFile(path.join(parent, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' '));
}

/** Removes cgroup `name` from every hierarchy; one that still holds a process stays. */
export async function removeCgroup(name: string): Promise<void> {
  const layout = await hostLayout();
  const mounts = new Set(Object.values(layout).map((place) => place.mount));
  for (const mount of mounts) await rmdir(path.join(mount, CGROUP_PARENT, name)).catch(() => undefined);
}

/**
 * Removes the VMs' cgroups that hold no process any more and were made more
 * than a minute ago (one just made is about to be joined): what a QEMU that
 * ended on its own, or a hyper that was killed, left behind.
 */
export async function sweepCgroups(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const layout = await hostLayout();
  const mounts = new Set(Object.values(layout).map((place) => place.mount));
  for (const mount of mounts) {
    const parent = path.join(mount, CGROUP_PARENT);
    for (const entry of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory()) continue;
      const dir = path.join(parent, entry.name);
      const made = await stat(dir).catch(() => undefined);
      if (made && Date.now() - made.mtimeMs > 60_000) await rmdir(dir).catch(() => undefined);
    }
  }
}
