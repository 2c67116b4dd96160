import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../errors.js';
import type { ContainerSpec } from '../spec/container.js';
import { parseVolume } from '../storage/mounts.js';

/**
 * Where `hyper serve` lets a container bind-mount host directories from:
 * each root with where it came from, for the refusal and the start-up line.
 */
export interface BindPolicy {
  roots: readonly BindRoot[];
}

export interface BindRoot {
  dir: string;
  why: string;
  /** Only read-only binds from under it (a runner's externals, as the runner itself binds them). */
  readOnly?: boolean;
}

/** A bind the policy refuses: Docker's 403, with the path and the flag that allows it. */
export class BindRefusedError extends HyperError {
  override name = 'BindRefusedError';
}

/** Whether `dir` is `root` or under it; both absolute and normalized. Pure. */
export function isUnder(dir: string, root: string): boolean {
  const inside = path.relative(root, dir);
  return inside === '' || (inside !== '..' && !inside.startsWith('../') && !path.isAbsolute(inside));
}

/**
 * A host path as the kernel will resolve it: symbolic links followed as far
 * as the path exists, the rest (made when the container is created, as
 * Docker's -v does) appended. So a link under an allowed root that points
 * elsewhere is judged by where it points.
 */
export async function resolvedPath(source: string): Promise<string> {
  const missing: string[] = [];
  let at = path.resolve(source);
  for (;;) {
    const real = await realpath(at).catch(() => undefined);
    if (real !== undefined) return path.join(real, ...missing.reverse());
    const parent = path.dirname(at);
    if (parent === at) return path.join(at, ...missing.reverse());
    missing.push(path.basename(at));
    at = parent;
  }
}

/** The policy's roots as the kernel resolves them, so that a root that is itself a link still admits what is under it. */
export async function resolvePolicy(policy: BindPolicy): Promise<BindPolicy> {
  return {
    roots: await Promise.all(policy.roots.map(async (r) => ({ ...r, dir: await resolvedPath(r.dir) }))),
  };
}

/**
 * The spec with each bind source replaced by the path the kernel resolves it
 * to, once that path is found under one of the policy's roots; refuses the
 * container otherwise. What is mounted later is the path that was checked,
 * not a link that could have been pointed elsewhere meanwhile. Docker socket
 * binds are not in `volumes`: they are this API, never a host path.
 */
export async function confineBinds(spec: ContainerSpec, policy: BindPolicy): Promise<ContainerSpec> {
  const volumes: string[] = [];
  for (const volume of spec.volumes) {
    const mount = parseVolume(volume, spec.baseDir ?? '/');
    if (mount.kind !== 'bind') {
      volumes.push(volume);
      continue;
    }
    // Docker's API takes absolute host paths only: no ~ (whose home?), nothing relative to the daemon.
    const given = volume.split(':')[0] ?? '';
    if (!given.startsWith('/'))
      throw new HyperError(`bind mount source "${given}" is not an absolute host path`, { kind: 'Invalid' });
    const real = await checkedSource(mount.source, mount.readOnly, policy);
    volumes.push(`${real}:${mount.target}${mount.readOnly ? ':ro' : ''}`);
  }
  return { ...spec, volumes };
}

/**
 * The path a bind source resolves to, when the policy admits it (read-only
 * roots admit read-only binds only); else the refusal. Run at create, and
 * again just before a start, so a link put in the checked path's place
 * meanwhile is caught.
 */
export async function checkedSource(source: string, readOnly: boolean, policy: BindPolicy): Promise<string> {
  const real = await resolvedPath(source);
  const under = policy.roots.filter((root) => isUnder(real, root.dir));
  if (under.length === 0) throw refusal(source, real, policy);
  if (!readOnly && under.every((root) => root.readOnly))
    throw new BindRefusedError(
      `bind mount of ${real} refused: ${under.map((r) => `${r.dir} (${r.why})`).join(', ')} is shared read-only; mount it with :ro`,
      { kind: 'Forbidden' },
    );
  return real;
}

/**
 * Before a start: each of the VM's shared directories still resolves to
 * itself (no link has taken its place since the create) and is still
 * admitted. Checked just before virtiofsd opens it; what is left is that
 * window.
 */
export async function checkShares(
  sources: readonly { source: string; readOnly: boolean }[],
  policy: BindPolicy,
): Promise<void> {
  for (const { source, readOnly } of sources) {
    const real = await checkedSource(source, readOnly, policy);
    if (real !== source)
      throw new BindRefusedError(
        `bind mount of ${source} refused: it leads to ${real} now, not to the directory checked when the container was created`,
        { kind: 'Forbidden' },
      );
  }
}

function refusal(source: string, real: string, policy: BindPolicy): BindRefusedError {
  const via = real === path.resolve(source) ? '' : ` (${source} leads there)`;
  const allowed = policy.roots.length
    ? `bind mounts are allowed under ${policy.roots.map((r) => `${r.dir} (${r.why}${r.readOnly ? ', read-only' : ''})`).join(', ')}`
    : 'no bind mount is allowed yet';
  return new BindRefusedError(
    `bind mount of ${real}${via} refused: it is outside the directories this daemon shares; ${allowed}; start hyper serve with --allow-bind ${real} (or a directory above it) to allow it`,
    { kind: 'Forbidden' },
  );
}
