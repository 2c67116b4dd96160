// Where a QEMU is kept once it has opened what it needs. When hyper is root,
// QEMU opens its disks, sockets, logs, RAM file and TAP as root, then drops
// to a uid and gid of its own VM's (-runas) and chroots into the VM's jail
// directory (-chroot), which holds only the sockets it must reach later and
// the helper user networking runs. Anything QMP would later ask it to open
// by path is looked up in that empty directory, as that uid.
import { randomInt } from 'node:crypto';
import { chown, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { linkOrCopy } from '../../files.js';
import { ownsAllIds } from '../../host/user.js';
import { type IdRange, probeId, vmIdRange } from '../../host/vm-ids.js';

/** A QEMU's jail: its directory, and the ids it drops to (absent when hyper is not root: nothing to drop). */
export interface Jail {
  dir: string;
  ids?: { uid: number; gid: number };
  /** HYPER_JAIL=off: not even QEMU's seccomp filter. */
  off?: true;
}

/** The name of the helper user networking runs, inside a jail. */
export const JAILED_CONNECT = 'hyper-connect';

/** QEMU's options that drop its privileges and confine it, once it has opened its files. Pure. */
export function jailArgs(jail: Jail | undefined): string[] {
  if (!jail?.ids) return [];
  return ['-runas', `${jail.ids.uid}:${jail.ids.gid}`, '-chroot', jail.dir];
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
const LEASES = '/run/hyper/vm-ids';

/**
 * The jail of the VM in `vmDir`: `jail/` in it, owned by the uid the VM's
 * QEMU drops to (the one it had before when no other VM took it since).
 * `connect`: the user-networking helper, linked in when the VM needs it.
 */
export async function vmJail(vmDir: string, connect?: string, confine = true): Promise<Jail> {
  const dir = vmJailDir(vmDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (connect) {
    await rm(path.join(dir, JAILED_CONNECT), { force: true });
    await linkOrCopy(connect, path.join(dir, JAILED_CONNECT));
  }
  if (!confine) return { dir, off: true };
  if (!(await ownsAllIds())) return { dir };
  const range = await vmIdRange();
  const ids = await leaseIds(dir, range);
  await chown(dir, ids.uid, ids.gid);
  return { dir, ids };
}

/** A jail of its own for a machine hyper makes and ends itself (a boot template's), in `dir`. */
export async function machineJail(dir: string, confine = true): Promise<Jail> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!confine) return { dir, off: true };
  if (!(await ownsAllIds())) return { dir };
  const ids = await leaseIds(dir, await vmIdRange());
  await chown(dir, ids.uid, ids.gid);
  return { dir, ids };
}

/**
 * A uid (and the same gid) for the jail `dir`: the one that owns it when its
 * lease is still its own, else a free one of `range`. A lease is a file
 * named by the uid holding the jail's path, made with O_EXCL; one whose jail
 * is gone or owned by another uid is stale (sweepLeases).
 */
async function leaseIds(dir: string, range: IdRange): Promise<{ uid: number; gid: number }> {
  await mkdir(LEASES, { recursive: true, mode: 0o700 });
  await sweepLeases();
  // The block's last id is the accelerator probe's (probeId).
  const had = (await stat(dir)).uid;
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
  const owner = (await stat(dir).catch(() => undefined))?.uid;
  if (owner === undefined || owner === 0) return;
  const lease = path.join(LEASES, String(owner));
  if ((await readFile(lease, 'utf8').catch(() => '')) === dir) await rm(lease, { force: true });
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
    const owner = dir ? (await stat(dir).catch(() => undefined))?.uid : undefined;
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
