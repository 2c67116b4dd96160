import os from 'node:os';
import path from 'node:path';
import { type ErrorKind, HyperError } from '../errors.js';

/**
 * What a service mounts, from Docker's short syntax (`-v` / `volumes:`) and
 * `--tmpfs`, plus the image's VOLUME declarations. Pure: parsing and planning
 * only; src/storage/volumes.ts makes the disks.
 */
export type MountSpec =
  /** A named volume: a disk in the job's state that outlives the service. */
  | { kind: 'volume'; name: string; target: string; readOnly: boolean }
  /** A fresh disk for this VM only (`-v /path`, or an image VOLUME nothing else covers). */
  | { kind: 'anonymous'; target: string; readOnly: boolean }
  /** A host directory or file, copied into a disk of its own when the service starts. */
  | { kind: 'bind'; source: string; target: string; readOnly: boolean }
  | { kind: 'tmpfs'; target: string; options: string }
  /** An image's filesystem (its cached read-only ext4, `base`), or `subpath` of it, mounted read-only. */
  | { kind: 'image'; image: string; base: string; subpath?: string; target: string; readOnly: true };

/** A `type: image` mount once its image's base is built: what planMounts takes. */
export interface ImageMountPlan {
  image: string;
  /** The image's read-only ext4 (src/images/rootfs.ts). */
  base: string;
  target: string;
  subpath?: string;
}

export class MountError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'MountError';
}

/** Docker's rule for volume names. */
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function isVolumeName(name: string): boolean {
  return VOLUME_NAME.test(name);
}
/** What may appear in tmpfs options (size=64m,mode=1777,uid=999...). */
const TMPFS_OPTIONS = /^[a-z0-9_]+(=[a-zA-Z0-9_]+)?(,[a-z0-9_]+(=[a-zA-Z0-9_]+)?)*$/;
/** As Docker's --tmpfs: no exec, no setuid, no devices; the size is up to the kernel (half the RAM). */
export const DEFAULT_TMPFS_OPTIONS = 'rw,noexec,nosuid,nodev';

function checkTarget(target: string, what: string): string {
  if (!target.startsWith('/')) {
    throw new MountError(`${what}: the path in the container must be absolute, not "${target}"`);
  }
  if (/\s/.test(target) || target.split('/').includes('..')) {
    throw new MountError(`${what}: "${target}" must not hold whitespace or ".."`);
  }
  const clean = path.posix.normalize(target).replace(/\/+$/, '');
  if (clean === '') throw new MountError(`${what}: cannot mount over the root directory /`);
  return clean;
}

/** A path inside an image, relative, as the guest init takes it: no whitespace, no "..". */
function checkSubpath(subpath: string, image: string): string {
  const clean = path.posix.normalize(subpath).replace(/^\/+|\/+$/g, '');
  if (/\s/.test(subpath) || clean === '..' || clean.startsWith('../') || clean === '' || clean === '.')
    throw new MountError(
      `image mount of ${image}: subpath "${subpath}" must name a directory inside the image, without whitespace or ".."`,
    );
  return clean;
}

function readMode(mode: string | undefined, what: string): boolean {
  if (mode === undefined || mode === '' || mode === 'rw') return false;
  if (mode === 'ro') return true;
  throw new MountError(`${what}: unknown mode "${mode}"; use ro or rw`);
}

/** Docker's rule: a source starting with /, . or ~ is a host path; anything else names a volume. */
export function isHostPath(source: string): boolean {
  return /^[/.~]/.test(source);
}

/** The volume a `volumes:` entry names (`NAME:/path`), if it names one. Pure. */
export function namedVolume(text: string): string | undefined {
  const [source = '', target] = text.split(':');
  return target !== undefined && !isHostPath(source) ? source : undefined;
}

/**
 * One `volumes:` entry in Docker's short syntax: `NAME:/path[:ro]`,
 * `/host/path:/path[:ro]`, `./rel:/path` (relative to `baseDir`), `/path`.
 */
export function parseVolume(text: string, baseDir: string): MountSpec {
  const what = `volume "${text}"`;
  const parts = text.split(':');
  if (parts.length === 1) return { kind: 'anonymous', target: checkTarget(text, what), readOnly: false };
  if (parts.length > 3) throw new MountError(`${what}: expected SOURCE:TARGET[:ro]`);
  const [source = '', targetText = '', mode] = parts;
  if (parts.length === 2 && source.startsWith('/') && !targetText.startsWith('/')) {
    // `/path:ro`: an anonymous volume with a mode.
    return { kind: 'anonymous', target: checkTarget(source, what), readOnly: readMode(targetText, what) };
  }
  const target = checkTarget(targetText, what);
  const readOnly = readMode(mode, what);
  if (isHostPath(source)) {
    const home = os.homedir();
    const absolute = source.startsWith('~')
      ? path.join(home, source.slice(1))
      : path.resolve(baseDir, source);
    return { kind: 'bind', source: absolute, target, readOnly };
  }
  if (!VOLUME_NAME.test(source)) {
    throw new MountError(
      `${what}: "${source}" is not a valid volume name; use letters, digits, "_", "." and "-", or a path starting with / or ./`,
    );
  }
  return { kind: 'volume', name: source, target, readOnly };
}

/** `--tmpfs /path[:options]`, or compose `tmpfs: /path[:ro]`. */
export function parseTmpfs(text: string): MountSpec {
  const colon = text.indexOf(':');
  const targetText = colon === -1 ? text : text.slice(0, colon);
  const what = `tmpfs "${text}"`;
  const target = checkTarget(targetText, what);
  const given = colon === -1 ? '' : text.slice(colon + 1);
  if (given && !TMPFS_OPTIONS.test(given)) {
    throw new MountError(`${what}: options must look like size=64m,mode=1777`);
  }
  return {
    kind: 'tmpfs',
    target,
    options: given ? `${DEFAULT_TMPFS_OPTIONS},${given}` : DEFAULT_TMPFS_OPTIONS,
  };
}

/**
 * Every mount of one service: its volumes and tmpfs mounts, then an anonymous
 * volume for each image VOLUME nothing else covers (as Docker does). Refuses
 * two mounts on one path. Sorted so that a parent is mounted before its children.
 */
export function planMounts(
  volumes: readonly string[],
  tmpfs: readonly string[],
  imageVolumes: readonly string[],
  baseDir: string,
  images: readonly ImageMountPlan[] = [],
): MountSpec[] {
  const mounts = [
    ...volumes.map((v) => parseVolume(v, baseDir)),
    ...tmpfs.map(parseTmpfs),
    ...images.map((m): MountSpec => {
      const target = checkTarget(m.target, `image mount of ${m.image}`);
      const subpath = m.subpath === undefined ? {} : { subpath: checkSubpath(m.subpath, m.image) };
      return { kind: 'image', image: m.image, base: m.base, target, readOnly: true, ...subpath };
    }),
  ];
  const seen = new Set<string>();
  for (const mount of mounts) {
    if (seen.has(mount.target)) throw new MountError(`two mounts on ${mount.target}; give each path once`);
    seen.add(mount.target);
  }
  for (const declared of imageVolumes) {
    const target = checkTarget(declared, `the image's VOLUME "${declared}"`);
    if (!seen.has(target)) {
      seen.add(target);
      mounts.push({ kind: 'anonymous', target, readOnly: false });
    }
  }
  return mounts.sort((a, b) => a.target.split('/').length - b.target.split('/').length);
}

/** A host directory a bind mount shares live with the guest (virtiofs), where the host can serve one. */
export interface MountShare {
  tag: string;
  source: string;
  target: string;
  readOnly: boolean;
}

/** The bind mounts as live shares, tagged in order. Pure. */
export function bindShares(mounts: readonly MountSpec[]): MountShare[] {
  return mounts.flatMap((mount, index) =>
    mount.kind === 'bind'
      ? [{ tag: `share${index}`, source: mount.source, target: mount.target, readOnly: mount.readOnly }]
      : [],
  );
}

/** A disk the VM gets for a mount: its virtio serial (how the guest finds it) and how to mount it. */
export interface MountDisk {
  serial: string;
  path: string;
  target: string;
  readOnly: boolean;
  /** Fill the empty disk from the image's content at the target on first mount, as Docker does for volumes. */
  copyUp: boolean;
  /** The named volume it holds, if any. */
  volume?: string;
  /** An image's read-only ext4 (raw), mounted whole or at `subpath`: a `type: image` mount. */
  image?: { name: string; subpath?: string };
}

/** The virtio-serial port name of the relayed sockets (src/vm/qemu/args.ts gives the guest this port). */
export const RELAY_PORT = 'hyper.relay';

/**
 * The guest init's mount table (fw_cfg opt/hyper/mounts), one mount a line:
 * `disk SERIAL TARGET ro|rw copyup|-`, `image SERIAL TARGET ro SUBPATH|-` (an
 * image's filesystem, read-only), `share TAG TARGET ro|rw -`,
 * `tmpfs - TARGET OPTIONS -` or `socket PORT TARGET - -` (a relayed socket,
 * served after every mount by guest/hyper-relay.c on the virtio-serial port
 * PORT). Pure.
 */
export function guestMountTable(
  disks: readonly MountDisk[],
  mounts: readonly MountSpec[],
  shares: readonly MountShare[] = [],
  relaySockets: readonly string[] = [],
): string {
  const lines: { target: string; line: string }[] = disks.map((d) => ({
    target: d.target,
    line: d.image
      ? `image ${d.serial} ${d.target} ro ${d.image.subpath ?? '-'}`
      : `disk ${d.serial} ${d.target} ${d.readOnly ? 'ro' : 'rw'} ${d.copyUp ? 'copyup' : '-'}`,
  }));
  for (const share of shares)
    lines.push({
      target: share.target,
      line: `share ${share.tag} ${share.target} ${share.readOnly ? 'ro' : 'rw'} -`,
    });
  for (const mount of mounts) {
    if (mount.kind === 'tmpfs')
      lines.push({ target: mount.target, line: `tmpfs - ${mount.target} ${mount.options} -` });
  }
  lines.sort((a, b) => a.target.split('/').length - b.target.split('/').length);
  const sockets = relaySockets.map((target) => `socket ${RELAY_PORT} ${target} - -`);
  return [...lines.map((l) => l.line), ...sockets].map((line) => `${line}\n`).join('');
}
