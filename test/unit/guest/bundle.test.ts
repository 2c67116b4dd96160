import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tc from '@actions/tool-cache';
import { bundleCacheVersion, findInToolCache } from '../../../src/guest/bundle.js';

// findInToolCache answers, without loading @actions/tool-cache, what tc.find
// answers for an exact version; both are asked here about real directories.
describe('findInToolCache: the tool cache entry of an exact version', () => {
  let root: string;
  let saved: string | undefined;
  const version = bundleCacheVersion('0123456789abcdef');

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'hyper-toolcache-'));
    saved = process.env.RUNNER_TOOL_CACHE;
    process.env.RUNNER_TOOL_CACHE = root;
  });
  afterEach(async () => {
    if (saved === undefined) delete process.env.RUNNER_TOOL_CACHE;
    else process.env.RUNNER_TOOL_CACHE = saved;
    await rm(root, { recursive: true, force: true });
  });

  test('a complete entry is found where tc.find finds it', async () => {
    const dir = path.join(root, 'hyper-guest', version, os.arch());
    await mkdir(dir, { recursive: true });
    await writeFile(`${dir}.complete`, '');
    expect(findInToolCache('hyper-guest', version)).toBe(dir);
    expect(tc.find('hyper-guest', version)).toBe(dir);
  });

  test('an entry without its .complete marker (a store cut short) is not found, as by tc.find', async () => {
    await mkdir(path.join(root, 'hyper-guest', version, os.arch()), { recursive: true });
    expect(findInToolCache('hyper-guest', version)).toBeUndefined();
    expect(tc.find('hyper-guest', version)).toBe('');
  });

  test('another version or arch is not found', async () => {
    const dir = path.join(root, 'hyper-guest', bundleCacheVersion('fedcba9876543210'), os.arch());
    await mkdir(dir, { recursive: true });
    await writeFile(`${dir}.complete`, '');
    expect(findInToolCache('hyper-guest', version)).toBeUndefined();
    expect(findInToolCache('hyper-guest', version, 'another-arch')).toBeUndefined();
    expect(tc.find('hyper-guest', version)).toBe('');
  });

  test('without RUNNER_TOOL_CACHE, or with it empty, it refuses as tc.find does', () => {
    for (const unset of [undefined, '']) {
      if (unset === undefined) delete process.env.RUNNER_TOOL_CACHE;
      else process.env.RUNNER_TOOL_CACHE = unset;
      expect(() => findInToolCache('hyper-guest', version)).toThrow(
        'Expected RUNNER_TOOL_CACHE to be defined',
      );
      expect(() => tc.find('hyper-guest', version)).toThrow('Expected RUNNER_TOOL_CACHE to be defined');
    }
  });
});
