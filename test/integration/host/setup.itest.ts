import { createServer, type Server } from 'node:http';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { bundleAssetName, ensureGuestBundle, recipeHash } from '../../../src/guest/bundle.js';
import { cacheDir } from '../../support/dirs.js';
import { hyper } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';

const restoreEnv = snapshotEnv();
afterEach(() => {
  restoreEnv();
});

describe('accelerator', () => {
  test('auto uses KVM when a test boot works, else TCG with a visible warning; an explicit kvm that does not work is an error', async () => {
    const auto = await hyper('setup', '--accel', 'auto');
    expect(auto.code).toBe(0);
    const accel = /^accel (\w+)$/m.exec(auto.stdout)?.[1];
    const kvm = await hyper('setup', '--accel', 'kvm');
    if (accel === 'kvm') {
      // A host with working KVM (a GitHub-hosted runner): no warning, and kvm works when asked for.
      expect(auto.stderr).not.toContain('falling back to TCG');
      expect(kvm.code).toBe(0);
    } else {
      // This machine: /dev/kvm missing or unable to boot a stock kernel (kvm_pvm).
      expect(accel).toBe('tcg');
      expect(auto.stderr).toMatch(/warning: KVM is not usable \(.+\); falling back to TCG/);
      expect(kvm.code).toBe(125);
      expect(kvm.stderr).toContain('accel "kvm" was asked for, but KVM does not work here:');
    }
    const tcg = await hyper('setup', '--accel', 'tcg');
    expect(tcg.stdout).toMatch(/^accel tcg$/m);
    expect(tcg.stderr).not.toContain('warning');
  });

  test('an unknown accelerator is refused', async () => {
    const result = await hyper('setup', '--accel', 'hvf');
    expect(result.code).toBe(125);
    expect(result.stderr).toContain('--accel: "hvf" is not an accelerator; use auto, kvm or tcg');
  });
});

test('a missing QEMU on a system without apt-get names every missing tool', async () => {
  // A PATH with a shell and nothing else: no QEMU, no apt-get.
  const bin = await mkdtemp(path.join(os.tmpdir(), 'hyper-nopath-'));
  try {
    await symlink('/bin/sh', path.join(bin, 'sh'));
    process.env.PATH = bin;
    const result = await hyper('run', 'oci:/nonexistent');
    expect(result.code).toBe(125);
    expect(result.stderr).toContain(
      'missing host tools: qemu-system-x86_64 (package qemu-system-x86), qemu-img (package qemu-utils), ' +
        'mkfs.ext4 (package e2fsprogs), debugfs (package e2fsprogs), zstd (package zstd). ' +
        'There is no apt-get here to install them',
    );
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
});

test('guest/recipe-hash.sh, used by the release workflow, names bundles as the action looks them up', async () => {
  const { stdout } = await execa('bash', ['guest/recipe-hash.sh']);
  expect(stdout).toBe(await recipeHash());
});

describe('guest bundle from release assets', () => {
  let server: Server;
  let work: string;
  const requests: string[] = [];
  /** What the fake answers for the list of releases. */
  let listing: unknown[] = [];

  beforeAll(async () => {
    // A prebuilt bundle to serve: the one this machine has (built by guest/build.sh).
    process.env.HYPER_ACCEL = 'tcg';
    const setup = await hyper('setup');
    expect(setup.code).toBe(0);
    const kernel = /^kernel (.+)$/m.exec(setup.stdout)?.[1] as string;
    work = await mkdtemp(path.join(os.tmpdir(), 'hyper-release-'));
    const asset = path.join(work, 'asset.tar.gz');
    await execa('tar', [
      '-czf',
      asset,
      '-C',
      path.dirname(kernel),
      path.basename(kernel),
      'initrd.img',
      'hyper-connect',
      'manifest.json',
    ]);
    const hash = await recipeHash();
    // Fake: GitHub's release API can't be reached here, so this server answers in its shape.
    server = createServer((request, response) => {
      const url = request.url ?? '';
      requests.push(url);
      const port = (server.address() as AddressInfo).port;
      if (url === '/repos/acme/hyper-services/releases/tags/v9') {
        response.setHeader('content-type', 'application/json');
        response.end(
          JSON.stringify({
            tag_name: 'v9',
            assets: [
              { name: 'unrelated.txt', browser_download_url: `http://127.0.0.1:${port}/nope` },
              {
                name: bundleAssetName(hash),
                browser_download_url: `http://127.0.0.1:${port}/download/bundle`,
              },
            ],
          }),
        );
      } else if (url.startsWith('/repos/acme/hyper-services/releases?')) {
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify(listing));
      } else if (url === '/download/bundle') {
        createReadStream(asset).pipe(response);
      } else {
        response.statusCode = 404;
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ message: 'Not Found' }));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    server.close();
    await rm(work, { recursive: true, force: true });
  });

  test('is looked up by the action version with the GitHub API, downloaded and kept in the tool cache', async () => {
    const toolCache = await mkdtemp(path.join(os.tmpdir(), 'hyper-toolcache-'));
    try {
      process.env.RUNNER_TOOL_CACHE = toolCache;
      const lines: string[] = [];
      const options = {
        githubApiUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        cacheDir: cacheDir(),
        log: (l: string) => lines.push(l),
        releaseRepository: 'acme/hyper-services',
        releaseTag: 'v9',
      };
      const bundle = await ensureGuestBundle(options);
      expect(bundle.kernel.startsWith(toolCache)).toBe(true);
      expect(requests).toEqual(['/repos/acme/hyper-services/releases/tags/v9', '/download/bundle']);
      const manifest = JSON.parse(
        await readFile(path.join(path.dirname(bundle.kernel), 'manifest.json'), 'utf8'),
      );
      expect(manifest.recipe).toBe(await recipeHash());
      expect(lines.some((l) => l.startsWith('Downloading guest bundle'))).toBe(true);
      // Taken as it came, not built here after a failed check.
      expect(lines.filter((l) => l.includes('failed') || l.includes('building'))).toEqual([]);

      // The second time it comes from the tool cache: no request.
      const again = await ensureGuestBundle(options);
      expect(again.kernel).toBe(bundle.kernel);
      expect(requests).toHaveLength(2);
    } finally {
      await rm(toolCache, { recursive: true, force: true });
    }
  });

  test('a major tag without a release of its own finds the asset among recent releases', async () => {
    const toolCache = await mkdtemp(path.join(os.tmpdir(), 'hyper-toolcache-'));
    const port = (server.address() as AddressInfo).port;
    try {
      listing = [
        { tag_name: 'v1.0.0', assets: [] },
        {
          tag_name: 'v1.1.0',
          assets: [
            {
              name: bundleAssetName(await recipeHash()),
              browser_download_url: `http://127.0.0.1:${port}/download/bundle`,
            },
          ],
        },
      ];
      process.env.RUNNER_TOOL_CACHE = toolCache;
      requests.length = 0;
      const bundle = await ensureGuestBundle({
        githubApiUrl: `http://127.0.0.1:${port}`,
        cacheDir: cacheDir(),
        log: () => {},
        releaseRepository: 'acme/hyper-services',
        releaseTag: 'v1',
      });
      expect(bundle.kernel.startsWith(toolCache)).toBe(true);
      expect(requests).toEqual([
        '/repos/acme/hyper-services/releases/tags/v1',
        '/repos/acme/hyper-services/releases?per_page=30',
        '/download/bundle',
      ]);
    } finally {
      listing = [];
      await rm(toolCache, { recursive: true, force: true });
    }
  });

  test('without such a release it is built from distro packages', async () => {
    const toolCache = await mkdtemp(path.join(os.tmpdir(), 'hyper-toolcache-'));
    try {
      process.env.RUNNER_TOOL_CACHE = toolCache;
      const lines: string[] = [];
      const bundle = await ensureGuestBundle({
        githubApiUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        cacheDir: cacheDir(),
        log: (l) => lines.push(l),
        releaseRepository: 'acme/hyper-services',
        releaseTag: 'v404',
      });
      expect(requests).toContain('/repos/acme/hyper-services/releases/tags/v404');
      expect(lines.some((l) => l.startsWith('Building guest bundle'))).toBe(true);
      expect(bundle.kernel.startsWith(toolCache)).toBe(true);
    } finally {
      await rm(toolCache, { recursive: true, force: true });
    }
  });
});
