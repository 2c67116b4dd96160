// A cgroup per VM, so that what a guest makes its QEMU do (grow its memory,
// spawn helpers, spin its vCPUs) stays within bounds on the host. Made under
// a parent cgroup in each hierarchy: cgroup v2, or the v1 hierarchies of the
// memory, pids and cpu controllers where the host has them there (hybrid
// hosts). The parent follows dockerd's --cgroup-parent: an absolute one
// (`/hyper`, the default, as Docker's cgroupfs driver makes `/docker`) is
// under each hierarchy's root; a relative one is under hyper's own cgroup,
// which is how a systemd service with Delegate=yes keeps its VMs inside the
// tree systemd gave it.
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exists } from '../files.js';

/** The controllers a VM's cgroup bounds. */
export type Controller = 'memory' | 'pids' | 'cpu';
const CONTROLLERS: readonly Controller[] = ['memory', 'pids', 'cpu'];

/**
 * Where each controller is: the mount point of the hierarchy that has it,
 * the cgroup mounted there (`root`, not `/` in a container that sees part
 * of the host's tree), and whether that is v2.
 */
export type CgroupLayout = Partial<Record<Controller, { mount: string; root: string; v2: boolean }>>;

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** cgroup v2's scale: 1-10000, 100 the default (v1's cpu.shares is this × 1024 / 100). */
  cpuWeight: number;
}

/** Where the VMs' cgroups go unless HYPER_CGROUP_PARENT says otherwise. */
export const DEFAULT_CGROUP_PARENT = '/hyper';
/**
 * Under cgroup v2 a cgroup that hands controllers to its children holds no
 * process itself: hyper moves out of its own cgroup into this child of it
 * before its VMs' parent is made there.
 */
const SELF_LEAF = 'supervisor';

/**
 * HYPER_CGROUP_PARENT checked: absolute (from each hierarchy's root) or
 * relative (under hyper's own cgroup), plain names between slashes. The
 * reason it is refused, if it is. Pure.
 */
export function cgroupParentProblem(parent: string): string | undefined {
  const names = parent.replace(/^\//, '').replace(/\/$/, '').split('/');
  if (names.some((name) => name === '' || name === '.' || name === '..'))
    return 'give cgroup names between slashes, with no "." or ".." and no empty name';
  if (!parent.startsWith('/') && names[0] === SELF_LEAF)
    return `"${SELF_LEAF}" under hyper's own cgroup is where hyper itself moves`;
  return undefined;
}

/**
 * The cgroup mounts in a /proc/self/mountinfo text: which v1 hierarchy holds
 * each controller, and the v2 mount with the controllers its
 * cgroup.controllers lists (`v2Controllers`, read by the caller). A
 * controller in a v1 hierarchy is not in v2. Pure.
 */
export function cgroupLayout(mountinfo: string, v2Controllers: (mount: string) => string[]): CgroupLayout {
  const layout: CgroupLayout = {};
  let unified: { mount: string; root: string } | undefined;
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const [, , , root, mount] = before.split(' ');
    const [fstype, , superOptions = ''] = after.split(' ');
    if (!mount || !root) continue;
    if (fstype === 'cgroup2') unified ??= { mount, root };
    if (fstype !== 'cgroup') continue;
    const options = superOptions.split(',');
    for (const controller of CONTROLLERS)
      if (options.includes(controller)) layout[controller] ??= { mount, root, v2: false };
  }
  if (unified !== undefined) {
    const available = v2Controllers(unified.mount);
    for (const controller of CONTROLLERS)
      if (!layout[controller] && available.includes(controller))
        layout[controller] = { ...unified, v2: true };
  }
  return layout;
}

/** A process's cgroup in each hierarchy, as /proc/PID/cgroup lists them: v1 by controller, v2 as `unified`. */
export interface OwnCgroups {
  v1: Partial<Record<string, string>>;
  unified?: string | undefined;
}

/** The cgroups in a /proc/PID/cgroup text. Pure. */
export function ownCgroups(text: string): OwnCgroups {
  const own: OwnCgroups = { v1: {} };
  for (const line of text.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    const [, id, controllers = '', cgroup = '/'] = match;
    if (id === '0' && controllers === '') own.unified = cgroup;
    else for (const controller of controllers.split(',')) own.v1[controller] ??= cgroup;
  }
  return own;
}

/** Where the VMs' parent cgroup is for one controller. */
export interface ParentPlace {
  /** The parent's directory. */
  dir: string;
  /** The mount it is under, and whether that is v2. */
  mount: string;
  v2: boolean;
  /**
   * For a relative parent, the directory of hyper's own cgroup it is under;
   * under v2 hyper moves out of it first (SELF_LEAF).
   */
  own?: string | undefined;
}

/**
 * The directory of cgroup `parent` in each hierarchy of `layout`, for a
 * process whose own cgroups are `own`; a controller whose own cgroup is
 * outside the mounted tree is left out. Pure.
 */
export function parentPlaces(
  layout: CgroupLayout,
  own: OwnCgroups,
  parent: string,
): Partial<Record<Controller, ParentPlace>> {
  const places: Partial<Record<Controller, ParentPlace>> = {};
  for (const controller of CONTROLLERS) {
    const where = layout[controller];
    if (!where) continue;
    if (parent.startsWith('/')) {
      places[controller] = { dir: path.join(where.mount, parent), mount: where.mount, v2: where.v2 };
      continue;
    }
    let mine = where.v2 ? own.unified : own.v1[controller];
    // Unknown (no /proc/self/cgroup): not guessed as the root.
    if (mine === undefined) continue;
    // Already in the leaf a hyper before it moved into (or systemd's DelegateSubgroup= put it in): the cgroup above is its own.
    if (where.v2 && path.posix.basename(mine) === SELF_LEAF) mine = path.posix.dirname(mine);
    const inside = path.posix.relative(where.root, mine);
    if (inside.startsWith('..')) continue;
    const ownDir = path.join(where.mount, inside);
    places[controller] = { dir: path.join(ownDir, parent), mount: where.mount, v2: where.v2, own: ownDir };
  }
  return places;
}

/** One write that sets a limit: the cgroup file and its value. */
export interface CgroupWrite {
  file: string;
  value: string;
}

/** The directories of cgroup `name` (one per hierarchy, under `places`) and the limit writes in each. Pure. */
export function cgroupPlan(
  places: Partial<Record<Controller, ParentPlace>>,
  name: string,
  limits: CgroupLimits,
): { dirs: string[]; writes: CgroupWrite[] } {
  const dirs: string[] = [];
  const writes: CgroupWrite[] = [];
  for (const controller of CONTROLLERS) {
    const place = places[controller];
    if (!place) continue;
    const dir = path.join(place.dir, name);
    if (!dirs.includes(dir)) dirs.push(dir);
    const [file, value] = limitFile(controller, place.v2, limits);
    writes.push({ file: path.join(dir, file), value });
  }
  return { dirs, writes };
}

/**
 * The v2 cgroups whose cgroup.subtree_control must list the controllers for
 * `place`'s children to have them: from where hyper may write (its own
 * cgroup for a relative parent, else the root) down to the parent. Pure.
 */
export function subtreeChain(place: ParentPlace): string[] {
  const from = place.own ?? place.mount;
  const chain = [from];
  for (const name of path.relative(from, place.dir).split('/').filter(Boolean))
    chain.push(path.join(chain[chain.length - 1] ?? from, name));
  return chain;
}

function limitFile(controller: Controller, v2: boolean, limits: CgroupLimits): [string, string] {
  if (controller === 'memory')
    return [v2 ? 'memory.max' : 'memory.limit_in_bytes', String(limits.memoryBytes)];
  if (controller === 'pids') return ['pids.max', String(limits.pids)];
  return v2
    ? ['cpu.weight', String(limits.cpuWeight)]
    : ['cpu.shares', String(Math.round((limits.cpuWeight * 1024) / 100))];
}

/** What VmCgroups.make gives: the cgroup.procs files a process joins, or why none could be made. */
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

/** This process's cgroups as it started: read once, before hyper moves itself (SELF_LEAF). */
let ownRead: Promise<OwnCgroups> | undefined;

function startingCgroups(): Promise<OwnCgroups> {
  ownRead ??= readFile('/proc/self/cgroup', 'utf8')
    .catch(() => '')
    .then(ownCgroups);
  return ownRead;
}

/** Moves done (one per own v2 cgroup), so that each is done once per process. */
const leavesMade = new Map<string, Promise<void>>();

/**
 * Moves every process of v2 cgroup `ownDir` into its child SELF_LEAF, so
 * that `ownDir` may hand controllers to the VMs' parent. The host's root
 * cgroup, exempt from the rule, is left as it is: it is the one without a
 * cgroup.type (a container's root is an ordinary cgroup, and has one).
 */
function leaveOwnCgroup(ownDir: string): Promise<void> {
  let move = leavesMade.get(ownDir);
  if (!move) {
    move = (async () => {
      if (!(await exists(path.join(ownDir, 'cgroup.type')))) return;
      const leaf = path.join(ownDir, SELF_LEAF);
      await mkdir(leaf, { recursive: true });
      // A process that starts meanwhile (a child being spawned) lands in ownDir too: go round until it is empty.
      for (let round = 0; ; round++) {
        const pids = (await readFile(path.join(ownDir, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean);
        if (pids.length === 0) return;
        if (round === 10) throw new Error(`processes keep arriving in ${ownDir}: ${pids.join(' ')}`);
        for (const pid of pids)
          await writeFile(path.join(leaf, 'cgroup.procs'), pid).catch((error: unknown) => {
            // A process that ended is gone from the list; any other failure is the caller's reason.
            if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
          });
      }
    })();
    move.catch(() => leavesMade.delete(ownDir));
    leavesMade.set(ownDir, move);
  }
  return move;
}

/**
 * The VMs' cgroups on this host, under `parent` (HYPER_CGROUP_PARENT,
 * checked by cgroupParentProblem). Only root makes them.
 */
export class VmCgroups {
  constructor(readonly parent: string = DEFAULT_CGROUP_PARENT) {}

  private async places(): Promise<Partial<Record<Controller, ParentPlace>>> {
    return parentPlaces(await hostLayout(), await startingCgroups(), this.parent);
  }

  /**
   * Makes cgroup `name` with `limits` in every hierarchy that has one of
   * the controllers, and says which cgroup.procs files a process joins.
   * Never throws: a host where none can be made (not root, no controller,
   * a read-only cgroupfs, a v2 parent not delegated to hyper) gets the
   * reason, and whatever was made is removed.
   */
  async make(name: string, limits: CgroupLimits): Promise<VmCgroup> {
    if (process.getuid?.() !== 0) return { reason: 'hyper is not running as root' };
    const places = await this.places();
    const plan = cgroupPlan(places, name, limits);
    if (plan.dirs.length === 0)
      return { reason: 'the host mounts no cgroup hierarchy with the memory, pids or cpu controller' };
    try {
      // One v2 parent serves all three controllers: made once.
      const parents = new Map(Object.values(places).map((place) => [place.dir, place]));
      for (const place of parents.values()) {
        if (place.v2) await this.delegate(place);
        else await mkdir(place.dir, { recursive: true });
      }
      for (const dir of plan.dirs) {
        // Made anew (a left one is empty, or holds what kill left): a sweep spares what is under a minute old.
        await rmdir(dir).catch(() => undefined);
        await mkdir(dir, { recursive: true });
      }
      for (const write of plan.writes) await writeFile(write.file, write.value);
      return { procs: plan.dirs.map((dir) => path.join(dir, 'cgroup.procs')), dirs: plan.dirs };
    } catch (error: unknown) {
      await this.remove(name);
      return { reason: `cannot make cgroup ${path.join(this.parent, name)}: ${(error as Error).message}` };
    }
  }

  /** Makes a v2 parent whose children get the controllers: each cgroup on the way hands them down. */
  private async delegate(place: ParentPlace): Promise<void> {
    const layout = await hostLayout();
    const wanted = CONTROLLERS.filter((controller) => layout[controller]?.v2);
    if (place.own) await leaveOwnCgroup(place.own);
    for (const dir of subtreeChain(place)) {
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, 'cgroup.subtree_control');
      const enabled = (await readFile(file, 'utf8')).split(/\s+/);
      const missing = wanted.filter((controller) => !enabled.includes(controller));
      if (missing.length) await writeFile(file, missing.map((c) => `+${c}`).join(' '));
    }
  }

  /** Removes cgroup `name` from every hierarchy; one that still holds a process stays. */
  async remove(name: string): Promise<void> {
    for (const dir of await this.parentDirs()) await rmdir(path.join(dir, name)).catch(() => undefined);
  }

  /**
   * Removes the VMs' cgroups that hold no process any more and were made
   * more than a minute ago (one just made is about to be joined): what a
   * QEMU that ended on its own, or a hyper that was killed, left behind.
   */
  async sweep(): Promise<void> {
    if (process.getuid?.() !== 0) return;
    for (const parent of await this.parentDirs()) {
      for (const entry of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
        if (!entry.isDirectory()) continue;
        const dir = path.join(parent, entry.name);
        const made = await stat(dir).catch(() => undefined);
        if (made && Date.now() - made.mtimeMs > 60_000) await rmdir(dir).catch(() => undefined);
      }
    }
  }

  private async parentDirs(): Promise<string[]> {
    return [...new Set(Object.values(await this.places()).map((place) => place.dir))];
  }
}
