// The ids QEMU runs as when hyper is root: a uid and gid of its own for each
// VM, from a block reserved for the system user `hyper` in /etc/subuid and
// /etc/subgid. A QEMU that a guest takes over then owns nothing of another
// VM's, and no file of the host's but what any user may read.
import { readFile } from 'node:fs/promises';
import { HyperError } from '../errors.js';
import { run } from '../process/run.js';

/**
 * The system user whose subordinate ids the VMs run as; `hyper setup` makes
 * it. Not `hyper`: that is the group docs/self-hosted.md has operators make
 * for the Docker API socket.
 */
export const VM_USER = 'hyper-vm';

/** A block of ids: `start` to `start + count - 1`. */
export interface IdRange {
  start: number;
  count: number;
}

/**
 * The block hyper reserves when the host has none for it: 65536 ids from
 * 0x70000000, above the ranges useradd hands out (100000 on) and the ones
 * systemd-nspawn picks containers from (0x80000 to 0x6FFFFFFF), and below
 * 2^31, where some tools read a uid as negative.
 */
export const DEFAULT_VM_IDS: IdRange = { start: 0x7000_0000, count: 65_536 };

/** The id the accelerator probe's QEMU runs as: the block's last, which no VM is given. Pure. */
export function probeId(range: IdRange): number {
  return range.start + range.count - 1;
}

/** The block /etc/subuid (or subgid) text gives `user`, if any. Pure. */
export function subordinateRange(text: string, user: string): IdRange | undefined {
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name === user && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? ''))
      return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/** The first /etc/passwd line whose uid falls in `range`. Pure. */
export function userInRange(passwd: string, range: IdRange): string | undefined {
  return passwd.split('\n').find((line) => {
    const uid = Number(line.split(':')[2]);
    return line.includes(':') && uid >= range.start && uid < range.start + range.count;
  });
}

/** The first line of a subordinate-id file, of another user, whose block overlaps `range`. Pure. */
export function overlappingEntry(text: string, range: IdRange, user: string): string | undefined {
  return text
    .split('\n')
    .map((line) => line.trim())
    .find((line) => {
      const [name, start, count] = line.split(':');
      if (!name || name === user || !/^\d+$/.test(start ?? '') || !/^\d+$/.test(count ?? '')) return false;
      const from = Number(start);
      return from < range.start + range.count && range.start < from + Number(count);
    });
}

export class VmIdsError extends HyperError {
  override name = 'VmIdsError';
}

let reserved: Promise<IdRange> | undefined;

/**
 * The block of ids VMs run as: the one /etc/subuid and /etc/subgid give the
 * user `hyper`, made first when there is none (the system user, then the
 * same block of uids and gids). Root only; once per process.
 */
export function vmIdRange(): Promise<IdRange> {
  reserved ??= reserveVmIds().catch((error: unknown) => {
    reserved = undefined;
    throw error;
  });
  return reserved;
}

async function reserveVmIds(): Promise<IdRange> {
  const read = async (): Promise<[string, string]> => [
    await readFile('/etc/subuid', 'utf8').catch(() => ''),
    await readFile('/etc/subgid', 'utf8').catch(() => ''),
  ];
  let [uids, gids] = await read();
  const have = subordinateRange(uids, VM_USER);
  if (have && sameRange(have, subordinateRange(gids, VM_USER))) return checkedRange(have);
  const range = have ?? DEFAULT_VM_IDS;
  const user = userInRange(await readFile('/etc/passwd', 'utf8').catch(() => ''), range);
  if (user)
    throw new VmIdsError(
      `the ids hyper runs VMs as (${range.start}-${range.start + range.count - 1}) include the user "${user.split(':')[0]}" in /etc/passwd; ` +
        `give the user ${VM_USER} a free block of its own in /etc/subuid and /etc/subgid`,
      { kind: 'Conflict' },
    );
  for (const text of [uids, gids]) {
    const clash = overlappingEntry(text, range, VM_USER);
    if (clash)
      throw new VmIdsError(
        `the ids hyper runs VMs as (${range.start}-${range.start + range.count - 1}) overlap "${clash}" in /etc/subuid or /etc/subgid; ` +
          `give the user ${VM_USER} a free block of its own in both files (for example with "usermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST ${VM_USER}")`,
        { kind: 'Conflict' },
      );
  }
  const known = await run({ program: 'id', args: ['-u', VM_USER] }, { allowFailure: true });
  if (known.exitCode !== 0) {
    const made = await run(
      {
        program: 'useradd',
        args: [
          '--system',
          '--user-group',
          '--no-create-home',
          '--home-dir',
          '/nonexistent',
          '--shell',
          '/usr/sbin/nologin',
          '--comment',
          'the ids hyper runs VMs as',
          VM_USER,
        ],
      },
      { allowFailure: true },
    );
    if (made.exitCode !== 0)
      throw new VmIdsError(`could not make the system user ${VM_USER}: ${made.stderr.trim()}`, {
        kind: 'Unavailable',
      });
  }
  const last = range.start + range.count - 1;
  const block = `${range.start}-${last}`;
  const added = await run(
    { program: 'usermod', args: ['--add-subuids', block, '--add-subgids', block, VM_USER] },
    { allowFailure: true },
  );
  if (added.exitCode !== 0)
    throw new VmIdsError(`could not reserve ids ${block} for the user ${VM_USER}: ${added.stderr.trim()}`, {
      kind: 'Unavailable',
    });
  [uids, gids] = await read();
  const now = subordinateRange(uids, VM_USER);
  if (!now || !sameRange(now, subordinateRange(gids, VM_USER)))
    throw new VmIdsError(
      `usermod did not reserve ids ${block} for the user ${VM_USER} in /etc/subuid and /etc/subgid`,
      {
        kind: 'Internal',
      },
    );
  return checkedRange(now);
}

/** A block with room for at least one VM besides the probe's id (probeId). */
function checkedRange(range: IdRange): IdRange {
  if (range.count < 2)
    throw new VmIdsError(
      `the block of ids /etc/subuid gives ${VM_USER} has ${range.count}; it needs one per VM at once, and one more`,
      { kind: 'Invalid' },
    );
  return range;
}

function sameRange(a: IdRange, b: IdRange | undefined): boolean {
  return b !== undefined && a.start === b.start && a.count === b.count;
}
