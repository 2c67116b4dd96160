import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { ApplyReport } from './layers.js';

/** The builder's own uid and gid, which `mkfs.ext4 -d` copies into every inode. */
export interface BuilderIds {
  uid: number;
  gid: number;
}

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

/** debugfs quotes arguments with "..."; a name with a quote or a newline cannot be written there. */
function quoted(relPath: string): string | undefined {
  return /["\n\r\\]/.test(relPath) ? undefined : `"/${relPath}"`;
}

/**
 * The debugfs script that gives a filesystem built without root the owners
 * its layers recorded (paths a layer did not name, such as implied parent
 * directories, get root, as Docker gives them), and makes its device nodes.
 * Pure: `paths` are every root-relative path in the built tree.
 */
export function ownershipScript(
  paths: readonly string[],
  report: Pick<ApplyReport, 'owners' | 'devices'>,
  builder: BuilderIds,
): { script: string; unwritable: string[] } {
  const lines: string[] = [];
  const unwritable: string[] = [];
  const setOwner = (target: string, uid: number, gid: number): void => {
    if (uid !== builder.uid) lines.push(`sif ${target} uid ${uid}`);
    if (gid !== builder.gid) lines.push(`sif ${target} gid ${gid}`);
  };
  for (const relPath of paths) {
    const target = quoted(relPath);
    if (!target) {
      unwritable.push(relPath);
      continue;
    }
    const owner = report.owners.get(relPath) ?? { uid: 0, gid: 0 };
    setOwner(target, owner.uid, owner.gid);
  }
  for (const device of report.devices) {
    const target = quoted(device.path);
    if (!target) {
      unwritable.push(device.path);
      continue;
    }
    // debugfs's mknod links the node into its current directory, whatever path it is given.
    const slash = device.path.lastIndexOf('/');
    const dir = slash < 0 ? '' : device.path.slice(0, slash);
    lines.push(
      `cd "/${dir}"`,
      `mknod "${device.path.slice(slash + 1)}" ${device.node} ${device.major} ${device.minor}`,
      'cd /',
    );
    const type = device.node === 'c' ? S_IFCHR : S_IFBLK;
    lines.push(`sif ${target} mode 0${(type | (device.mode & 0o7777)).toString(8)}`);
    lines.push(`sif ${target} uid ${device.uid}`, `sif ${target} gid ${device.gid}`);
  }
  return { script: lines.length ? `${lines.join('\n')}\n` : '', unwritable };
}

/** Every root-relative path under `root`, directories before their contents. */
export async function treePaths(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map((entry) => entry.split(path.sep).join('/')).sort();
}
