import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { type ErrorKind, HyperError } from './errors.js';
import { run } from './process/run.js';

/** File helpers every layer uses. */

export function isNotFound(error: unknown): boolean {
  // Duck-typed: errors from Node's internals may come from another realm (jest's VM modules).
  return typeof error === 'object' && error !== null && (error as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Whether `path` exists; any error but "not found" (a permission problem, say) is thrown. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error: unknown) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** The apparent size of everything under `dir`, in bytes (what a copy of it holds). */
export async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run({ program: 'du', args: ['-s', '-B1', '--apparent-size', dir] });
  return Number.parseInt(stdout, 10);
}

/** A hard link when the two paths share a filesystem, else a copy. */
export async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(from, to);
  }
}

/** The hex digest of a file's content, read as a stream (`algorithm` as node:crypto names it). */
export async function fileDigest(file: string, algorithm = 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Writes `content` beside `file` under a name unique to this write, then
 * renames it into place: a reader sees the old file or the new one, never
 * half of one, and two processes writing at once never share a temp file.
 */
export async function writeFileAtomic(file: string, content: string | Buffer): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, content);
    await rename(temp, file);
  } catch (error: unknown) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** A state file that exists but cannot be read as what it should be. */
export class DamagedStateError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  override name = 'DamagedStateError';
  constructor(
    readonly file: string,
    why: string,
    remedy: string,
  ) {
    super(`${file} is damaged (${why}); ${remedy}`);
  }
}

/** Parses a state file's JSON, which must be an object (or an array): the value, or why it is damaged. Pure. */
export function parseStateJson(
  text: string,
  shape: 'object' | 'array' = 'object',
): { value: unknown } | { why: string } {
  if (text.trim() === '') return { why: 'it is empty' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error: unknown) {
    return { why: `not valid JSON: ${(error as Error).message}` };
  }
  const isArray = Array.isArray(value);
  if (shape === 'array' ? !isArray : typeof value !== 'object' || value === null || isArray) {
    return { why: `not a JSON ${shape}` };
  }
  return { value };
}

/**
 * Reads a JSON state file: undefined when it does not exist, its value when it
 * parses, and a DamagedStateError naming the file and `remedy` when it is
 * truncated or not JSON, so damage is reported, never silently replaced.
 */
export async function readStateFile<T>(
  file: string,
  remedy: string,
  shape: 'object' | 'array' = 'object',
): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error: unknown) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  const parsed = parseStateJson(text, shape);
  if ('why' in parsed) throw new DamagedStateError(file, parsed.why, remedy);
  return parsed.value as T;
}

/**
 * Runs `work` holding `lock`, a directory made with mkdir (atomic on every
 * filesystem), between hyper processes. A lock older than `staleMs` was
 * left by a process that died holding it and is taken over; after
 * `timeoutMs` of waiting, `busy(cause)` is thrown.
 */
export async function withDirLock<T>(
  lock: string,
  options: { staleMs: number; pollMs: number; timeoutMs: number; busy: (cause: unknown) => Error },
  work: () => Promise<T>,
): Promise<T> {
  for (let waited = 0; ; waited += options.pollMs) {
    try {
      await mkdir(lock);
      break;
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age > options.staleMs) await rmdir(lock).catch(() => undefined);
      if (waited > options.timeoutMs) throw options.busy(error);
      await new Promise((resolve) => setTimeout(resolve, options.pollMs));
    }
  }
  try {
    return await work();
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}
