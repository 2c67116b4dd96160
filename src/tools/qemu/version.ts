// In src/tools, beside qemu-img's client; the binary is passed in, since its name is src/vm's (HYPER_QEMU).
import { mkdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../../files.js';
import { programPath, run, type Command } from '../../process/run.js';

export interface QemuVersion {
  /** The first line, e.g. "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)": part of a checkpoint's identity. */
  text: string;
  /** "7.2.19"; undefined when the line does not name one. */
  version: string | undefined;
}

export function qemuVersionCommand(binary: string): Command {
  return { program: binary, args: ['--version'] };
}

/** Parses `qemu-system-* --version` or `qemu-img --version`. Pure. */
export function parseQemuVersion(stdout: string): QemuVersion {
  const text = stdout.split('\n')[0] ?? '';
  return { text, version: /\bversion (\d+(?:\.\d+)+)/.exec(text)?.[1] };
}

/** Whether `version` ("7.2.22") is `major`.`minor` or later; an unknown version is taken as older than any. Pure. */
export function qemuAtLeast(version: string | undefined, major: number, minor: number): boolean {
  const [have = 0, haveMinor = 0] = (version ?? '').split('.').map(Number);
  return have > major || (have === major && haveMinor >= minor);
}

export async function qemuVersion(binary: string): Promise<QemuVersion> {
  return parseQemuVersion((await run(qemuVersionCommand(binary))).stdout);
}

const asked = new Map<string, Promise<QemuVersion>>();

/**
 * qemuVersion, asked once per binary and process (a failure is asked again).
 * With `cacheFile`, the answer is also kept on disk beside the binary's
 * identity (path, inode, size, mtime, ctime), so later processes read it
 * instead of starting QEMU: an upgrade changes the identity and is asked anew.
 */
export function knownQemuVersion(binary: string, cacheFile?: string): Promise<QemuVersion> {
  let version = asked.get(binary);
  if (!version) {
    version = cacheFile === undefined ? qemuVersion(binary) : rememberedVersion(binary, cacheFile);
    version.catch(() => asked.delete(binary));
    asked.set(binary, version);
  }
  return version;
}

async function rememberedVersion(binary: string, cacheFile: string): Promise<QemuVersion> {
  const found = await programPath(binary);
  if (found === undefined) return qemuVersion(binary);
  const identity = await binaryIdentity(found);
  const kept = rememberedAnswer(await readFile(cacheFile, 'utf8').catch(() => ''), identity);
  if (kept) return kept;
  const version = await qemuVersion(binary);
  try {
    await mkdir(path.dirname(cacheFile), { recursive: true });
    await writeFileAtomic(cacheFile, JSON.stringify({ identity, text: version.text }));
  } catch {
    // The answer stands; the next process asks QEMU again.
  }
  return version;
}

/** What a QEMU binary is, as far as its version goes: a reinstall or upgrade changes it. */
async function binaryIdentity(file: string): Promise<string> {
  const real = await realpath(file);
  const info = await stat(real);
  return [real, info.dev, info.ino, info.size, info.mtimeMs, info.ctimeMs].join('|');
}

/** The version kept in a cache file's `text` for `identity`; undefined for another binary or a damaged file. Pure. */
export function rememberedAnswer(text: string, identity: string): QemuVersion | undefined {
  try {
    const kept = JSON.parse(text) as { identity?: unknown; text?: unknown };
    if (kept.identity !== identity || typeof kept.text !== 'string' || kept.text === '') return undefined;
    return parseQemuVersion(kept.text);
  } catch {
    return undefined;
  }
}
