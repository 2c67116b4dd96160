import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  checkShares,
  confineBinds,
  isUnder,
  resolvedPath,
  resolvePolicy,
} from '../../../src/api/bind-policy.js';
import { errorKind } from '../../../src/errors.js';
import { statusFor } from '../../../src/api/protocol.js';
import type { ContainerSpec } from '../../../src/spec/container.js';

const spec = (volumes: string[]): ContainerSpec => ({
  name: 'c',
  image: 'busybox',
  env: [],
  ports: [],
  volumes,
  dependsOn: [],
  tmpfs: [],
});

let dir: string;
beforeAll(async () => {
  // Real directories and links: the policy judges paths as the kernel resolves them.
  dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-bind-policy-'));
  await mkdir(path.join(dir, 'work', 'repo'), { recursive: true });
  await mkdir(path.join(dir, 'secret'));
  await symlink(path.join(dir, 'secret'), path.join(dir, 'work', 'escape'));
  await symlink(path.join(dir, 'work'), path.join(dir, 'work-link'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

test('isUnder: the root itself and what is below it, never a sibling that shares its prefix', () => {
  expect(isUnder('/w', '/w')).toBe(true);
  expect(isUnder('/w/a/b', '/w')).toBe(true);
  expect(isUnder('/work', '/w')).toBe(false);
  expect(isUnder('/w/..foo', '/w')).toBe(true);
  expect(isUnder('/x', '/w')).toBe(false);
  expect(isUnder('/', '/w')).toBe(false);
  expect(isUnder('/etc', '/')).toBe(true);
});

test('resolvedPath follows links as far as the path exists, and keeps the rest as given', async () => {
  expect(await resolvedPath(path.join(dir, 'work', 'escape', 'x', 'y'))).toBe(
    path.join(dir, 'secret', 'x', 'y'),
  );
  expect(await resolvedPath(path.join(dir, 'work', 'repo', '..', '..', 'secret'))).toBe(
    path.join(dir, 'secret'),
  );
  expect(await resolvedPath('/no/such/dir')).toBe('/no/such/dir');
});

describe('confineBinds', () => {
  const policy = () => resolvePolicy({ roots: [{ dir: path.join(dir, 'work-link'), why: '--allow-bind' }] });

  test('binds under a root pass as the paths they resolve to, also through a root that is a link; volumes are not binds', async () => {
    const confined = await confineBinds(
      spec([`${dir}/work-link/repo:/src:ro`, `${dir}/work/new/dir:/new`, 'data:/data', '/anon']),
      await policy(),
    );
    expect(confined.volumes).toEqual([
      `${dir}/work/repo:/src:ro`,
      `${dir}/work/new/dir:/new`,
      'data:/data',
      '/anon',
    ]);
  });

  test('a bind outside every root is refused with 403, naming the path and the flag that allows it', async () => {
    const refused = confineBinds(spec([`${dir}/work/repo:/src`, '/etc:/host-etc:ro']), await policy());
    await expect(refused).rejects.toThrow(
      `bind mount of /etc refused: it is outside the directories this daemon shares; bind mounts are allowed under ${dir}/work (--allow-bind); start hyper serve with --allow-bind /etc (or a directory above it) to allow it`,
    );
    const error: unknown = await refused.catch((e: unknown) => e);
    expect(errorKind(error)).toBe('Forbidden');
    expect(statusFor(error)).toBe(403);
  });

  test('a link under a root that leads outside is judged by where it leads', async () => {
    await expect(confineBinds(spec([`${dir}/work/escape:/x`]), await policy())).rejects.toThrow(
      `bind mount of ${dir}/secret (${dir}/work/escape leads there) refused`,
    );
  });

  test('with no root, every bind is refused', async () => {
    await expect(confineBinds(spec([`${dir}/work:/w`]), { roots: [] })).rejects.toThrow(
      'no bind mount is allowed yet; start hyper serve with --allow-bind',
    );
  });

  test('a read-only root admits read-only binds only', async () => {
    const readOnly = {
      roots: [{ dir: path.join(dir, 'work'), why: "a runner's externals", readOnly: true }],
    };
    await expect(confineBinds(spec([`${dir}/work/repo:/e:ro`]), readOnly)).resolves.toBeDefined();
    await expect(confineBinds(spec([`${dir}/work/repo:/e`]), readOnly)).rejects.toThrow(
      `bind mount of ${dir}/work/repo refused: ${dir}/work (a runner's externals) is shared read-only; mount it with :ro`,
    );
  });

  test('a source that is not an absolute path is refused: no ~, nothing relative to the daemon', async () => {
    for (const source of ['~/.ssh', './x'])
      await expect(confineBinds(spec([`${source}:/x`]), await policy())).rejects.toThrow(
        `bind mount source "${source}" is not an absolute host path`,
      );
  });

  test('at start, a shared directory that a link has replaced since the create is refused', async () => {
    const swapped = path.join(dir, 'work', 'swapped');
    await mkdir(swapped);
    const shares = [{ source: swapped, readOnly: false }];
    await expect(checkShares(shares, await policy())).resolves.toBeUndefined();
    await rm(swapped, { recursive: true });
    await symlink(path.join(dir, 'work', 'repo'), swapped);
    await expect(checkShares(shares, await policy())).rejects.toThrow(
      `bind mount of ${swapped} refused: it leads to ${dir}/work/repo now, not to the directory checked when the container was created`,
    );
  });
});
