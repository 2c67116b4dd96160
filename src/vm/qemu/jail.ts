// Where a QEMU is kept once it has opened what it needs. When hyper is root,
// QEMU opens its disks, sockets, logs, RAM file and TAP as root, then drops
// to a uid and gid of its own VM's (-runas) and chroots into the VM's jail
// directory (-chroot), which holds only the sockets it must reach later and
// the helper user networking runs. Anything QMP would later ask it to open
// by path is looked up in that empty directory, as that uid.
import { randomInt } from 'node:crypto';
import { constants } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  link,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ownsAllIds } from '../../host/user.js';
import { type IdRange, probeId, vmIdRange } from '../../host/vm-ids.js';
import { knownQemuVersion, qemuAtLeast } from '../../tools/qemu/version.js';
import { canMakeNetns } from '../../host/namespaces.js';
import { withDirLock } from '../../files.js';

/** A QEMU's jail: its directory, and the ids it drops to (absent when hyper is not root: nothing to drop). */
export interface Jail {
  dir: string;
  ids?: { uid: number; gid: number };
  /** HYPER_JAIL=off: not even QEMU's seccomp filter. */
  off?: true;
  /** QEMU's version ("7.2.22"), which says how it takes the drop and the chroot (jailArgs). */
  qemuVersion?: string | undefined;
  /** hyper may put QEMU in a network namespace of its own (canMakeNetns). */
  netns?: boolean;
}

/** The name of the helper user networking runs, inside a jail. */
export const JAILED_CONNECT = 'hyper-connect';

/**
 * QEMU's options that drop its privileges and confine it, once it has
 * opened its files: `-runas` and `-chroot` up to 8.0; 8.1 moved the chroot
 * into `-run-with` (and 9.0 removed `-chroot`), 9.1 the user too. `version`:
 * QEMU's, as "7.2.22" (unknown: the oldest form). Pure.
 */
export function jailArgs(jail: Jail | undefined): string[] {
  if (!jail?.ids) return [];
  const user = `${jail.ids.uid}:${jail.ids.gid}`;
  if (qemuAtLeast(jail.qemuVersion, 9, 1)) return ['-run-with', `chroot=${jail.dir},user=${user}`];
  if (qemuAtLeast(jail.qemuVersion, 8, 1)) return ['-run-with', `chroot=${jail.dir}`, '-runas', user];
  return ['-runas', user, '-chroot', jail.dir];
}

/**
 * The path a QEMU in `jail` reaches file `name` of the jail by: from the
 * jail's root once it is chrooted, else through `alias` (a short path to the
 * jail, see shortAlias). Pure.
 */
export function pathInJail(jail: Jail, alias: string, name: string): string {
  return jail.ids ? `/${name}` : path.join(alias, name);
}

/** Where a host keeps which VM holds which uid: gone with a reboot, as the VMs are. */
export const LEASES = '/run/hyper-vm-ids';

/**
 * The jail of the VM in `vmDir`: `jail/` in it, root's, with the group of
 * the VM's gid, mode 1770: QEMU (that uid and gid) can make its sockets
 * there but cannot move or replace what root put there (sticky), so hyper
 * never follows a link QEMU planted. The VM keeps the ids it had while no
 * other VM took them since. `connect`: the user-networking helper, linked
 * in when the chrooted VM needs it.
 */
export async function vmJail(qemu: string, vmDir: string, connect?: string, confine = true): Promise<Jail> {
  return jailIn(qemu, vmJailDir(vmDir), confine, connect);
}

/** A jail of its own for a machine hyper makes and ends itself (a boot template's), in `dir`. */
export function machineJail(qemu: string, dir: string, confine = true): Promise<Jail> {
  return jailIn(qemu, dir, confine);
}

async function jailIn(qemu: string, dir: string, confine: boolean, connect?: string): Promise<Jail> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!confine) return { dir, off: true };
  if (!(await ownsAllIds())) return { dir };
  const { version } = await knownQemuVersion(qemu);
  const ids = await withLeases(async () => leaseIds(dir, await vmIdRange()));
  await chown(dir, 0, ids.gid);
  await chmod(dir, 0o1770);
  if (connect) {
    // Made anew, never through a link: O_EXCL and link(2) do not follow one at the target.
    const helper = path.join(dir, JAILED_CONNECT);
    await rm(helper, { force: true });
    await link(connect, helper).catch(async (error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      await copyFile(connect, helper, constants.COPYFILE_EXCL);
    });
  }
  return { dir, ids, qemuVersion: version, netns: await canMakeNetns() };
}

/**
 * A uid (and the same gid) for the jail `dir`: the one whose group it has
 * when its lease is still its own, else a free one of `range`. A lease is a
 * file named by the uid holding the jail's path; one whose jail is gone or
 * has another group is stale (sweepLeases). Under withLeases.
 */
async function leaseIds(dir: string, range: IdRange): Promise<{ uid: number; gid: number }> {
  await sweepLeases();
  // The block's last id is the accelerator probe's (probeId).
  const had = (await stat(dir)).gid;
  if (had >= range.start && had < probeId(range) && (await claim(had, dir))) return { uid: had, gid: had };
  for (let attempt = 0; attempt < 64; attempt++) {
    const uid = range.start + randomInt(range.count - 1);
    if (await claim(uid, dir)) return { uid, gid: uid };
  }
  throw new Error(`no free id in ${range.start}-${range.start + range.count - 1} after 64 tries (${LEASES})`);
}

async function claim(uid: number, dir: string): Promise<boolean> {
  const lease = path.join(LEASES, String(uid));
  try {
    const handle = await open(lease, 'wx', 0o600);
    await handle.writeFile(dir);
    await handle.close();
    return true;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readFile(lease, 'utf8').catch(() => '')) === dir;
  }
}

/**
 * Gives back the uid of the jail `dir` (its QEMU has ended): the lease goes,
 * and the jail keeps its owner, so a start takes the same uid again when no
 * other VM has taken it meanwhile.
 */
export async function releaseJail(dir: string): Promise<void> {
  if (!(await ownsAllIds())) return;
  const owner = (await stat(dir).catch(() => undefined))?.gid;
  if (owner === undefined || owner === 0) return;
  const lease = path.join(LEASES, String(owner));
  await withLeases(async () => {
    if ((await readFile(lease, 'utf8').catch(() => '')) !== dir) return;
    // What QEMU left running as that uid (user networking's helpers outlive it) ends first: the next VM given it must not meet them.
    if (!(await endProcessesOf(owner))) return;
    await rm(lease, { force: true });
  });
}

/** SIGKILLs every process whose real uid is `uid`, and waits (2 s at most) until none is left; false when some still are. */
async function endProcessesOf(uid: number): Promise<boolean> {
  const deadline = Date.now() + 2000;
  for (;;) {
    let left = 0;
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
      const real = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      // A zombie has let go of everything; its parent reaps it.
      if (real !== String(uid) || /^State:\s+Z/m.test(status)) continue;
      left++;
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
    if (left === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Runs `work` holding the host's lease lock (a directory made with mkdir),
 * so that no sweep removes a lease another process has just claimed. A
 * lock older than a minute was left by a process that died holding it.
 */
async function withLeases<T>(work: () => Promise<T>): Promise<T> {
  await mkdir(LEASES, { recursive: true, mode: 0o700 });
  const lock = `${LEASES}.lock`;
  return withDirLock(
    lock,
    {
      staleMs: 60_000,
      pollMs: 20,
      timeoutMs: 120_000,
      busy: (cause) => new Error(`the VM id leases are locked by another hyper process (${lock})`, { cause }),
    },
    work,
  );
}

/** The jail directory of the VM in `vmDir`. Pure. */
export function vmJailDir(vmDir: string): string {
  return path.join(vmDir, 'jail');
}

/**
 * Removes the leases whose jail is gone or has another owner, made more
 * than a minute ago (a jail is chowned to its uid just after its lease is
 * made).
 */
async function sweepLeases(): Promise<void> {
  for (const name of await readdir(LEASES).catch(() => [] as string[])) {
    const lease = path.join(LEASES, name);
    const made = await stat(lease).catch(() => undefined);
    if (!made || Date.now() - made.mtimeMs < 60_000) continue;
    const dir = await readFile(lease, 'utf8').catch(() => '');
    const owner = dir ? (await stat(dir).catch(() => undefined))?.gid : undefined;
    if (owner !== Number(name)) await rm(lease, { force: true });
  }
}

/**
 * A short path to `dir`, for the Unix sockets hyper serves there (a socket's
 * path is limited to 107 bytes, and a VM's dir can be deep): a link in a
 * new directory under the temp dir. `remove` takes it away.
 */
export async function shortAlias(dir: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const holder = await mkdtemp(path.join(os.tmpdir(), 'hyper-'));
  const alias = path.join(holder, 'j');
  await symlink(dir, alias);
  return { path: alias, remove: () => rm(holder, { recursive: true, force: true }) };
}
