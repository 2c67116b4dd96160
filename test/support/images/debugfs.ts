/**
 * Reads an ext4 image with `debugfs` (read-only: it never opens the image for writing without
 * -w, and nothing is mounted). Parsers of its output are pure; the readers run it.
 */
import { run } from '../../../src/process/run.js';

export interface Ext4Inode {
  inode: number;
  type: string;
  /** Permission bits with setuid, setgid and sticky (no file type bits). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  /** Target of a symlink short enough to live in the inode (< 60 bytes). */
  fastLinkTarget?: string;
}

export interface Ext4DirEntry {
  name: string;
  inode: number;
  /** st_mode as debugfs prints it: file type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
}

/** Parses `debugfs -R 'stat PATH'` output. Throws when it shows no inode (the path does not exist). */
export function parseDebugfsStat(output: string): Ext4Inode {
  const header = /^Inode: (\d+)\s+Type: (\S+)\s+Mode:\s+([0-7]+)/m.exec(output);
  const owner = /^User:\s+(\d+)\s+Group:\s+(\d+).*?Size: (\d+)/m.exec(output);
  const links = /^Links: (\d+)/m.exec(output);
  if (!header || !owner || !links) throw new Error(`not the output of debugfs stat:\n${output}`);
  const fastLink = /^Fast link dest: "(.*)"$/m.exec(output);
  return {
    inode: Number(header[1]),
    type: header[2] ?? '',
    mode: Number.parseInt(header[3] ?? '', 8),
    uid: Number(owner[1]),
    gid: Number(owner[2]),
    size: Number(owner[3]),
    links: Number(links[1]),
    ...(fastLink ? { fastLinkTarget: fastLink[1] } : {}),
  };
}

/**
 * Parses `debugfs -R 'ls -l DIR'` output, one entry a line:
 * `  INODE  MODE (TYPE)  UID  GID  SIZE DATE TIME NAME`. Leaves out "." and "..".
 */
export function parseDebugfsLs(output: string): Ext4DirEntry[] {
  const entries: Ext4DirEntry[] = [];
  for (const line of output.split('\n')) {
    const match = /^\s*(\d+)\s+([0-7]+)\s+\(\d+\)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s(.*)$/.exec(line);
    if (!match) continue;
    const name = match[6] ?? '';
    if (name === '.' || name === '..') continue;
    entries.push({
      name,
      inode: Number(match[1]),
      mode: Number.parseInt(match[2] ?? '', 8),
      uid: Number(match[3]),
      gid: Number(match[4]),
      size: Number(match[5]),
    });
  }
  return entries;
}

export async function debugfs(image: string, request: string): Promise<string> {
  const { stdout, stderr } = await run({ program: 'debugfs', args: ['-R', request, image] });
  // debugfs exits 0 even when the request failed; it says so on stderr after its banner.
  const complaint = stderr
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('debugfs '))
    .join('\n');
  if (complaint) throw new Error(`debugfs -R '${request}' ${image}: ${complaint}`);
  return stdout;
}

/** The inode at `path` ("/"-rooted) in the ext4 image. */
export async function statPath(image: string, path: string): Promise<Ext4Inode> {
  return parseDebugfsStat(await debugfs(image, `stat ${path}`));
}

/** The entries of the directory at `path`, by name. */
export async function listDirectory(image: string, path: string): Promise<Ext4DirEntry[]> {
  return parseDebugfsLs(await debugfs(image, `ls -l ${path}`));
}

/** The content of the file at `path`. */
export async function readExt4File(image: string, path: string): Promise<string> {
  return debugfs(image, `cat ${path}`);
}
