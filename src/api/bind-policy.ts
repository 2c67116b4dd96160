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
  roots: readonly { dir: string; why: string }[];
}

/** A bind the policy refuses: Docker's 403, with the path and the flag that allows it. */
export class BindRefusedError extends HyperError {
  override name = 'BindRefusedError';
}

/** Whether `dir` is `root` or under it; both absolute and normalized. Pure. */
export function isUnder(dir: string, root: string): boolean {
  const inside = path.relative(root, dir);
  return inside === '' || (!inside.startsWith('..') && !path.isAbsolute(inside));
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
    const real = await resolvedPath(mount.source);
    if (!policy.roots.some((root) => isUnder(real, root.dir))) throw refusal(mount.source, real, policy);
    volumes.push(`${real}:${mount.target}${mount.readOnly ? ':ro' : ''}`);
  }
  return { ...spec, volumes };
}

function refusal(source: string, real: string, policy: BindPolicy): BindRefusedError {
  const via = real === path.resolve(source) ? '' : ` (${source} leads there)`;
  const allowed = policy.roots.length
    ? `bind mounts are allowed under ${policy.roots.map((r) => `${r.dir} (${r.why})`).join(', ')}`
    : 'no bind mount is allowed yet';
  return new BindRefusedError(
    `bind mount of ${real}${via} refused: it is outside the directories this daemon shares; ${allowed}; start hyper serve with --allow-bind ${real} (or a directory above it) to allow it`,
    { kind: 'Forbidden' },
  );
}
