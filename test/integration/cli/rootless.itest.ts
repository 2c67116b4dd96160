import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { addDirLayer, busyboxLayout } from '../../support/fixtures.js';

// GitHub-hosted runners run the action as an ordinary user: a root filesystem
// built there must still carry the owners, modes and devices its layers give.
// This test builds one as uid 65534 with the real CLI bundle, then reads the
// ext4 with debugfs.
let work: string;
let base: string;

async function debugfsStat(file: string): Promise<string> {
  const { stdout } = await execa('debugfs', ['-R', `stat ${file}`, base]);
  return stdout.split('\n')[0] + ' ' + (stdout.split('\n').find((l) => l.includes('User:')) ?? '');
}

beforeAll(async () => {
  work = await mkdtemp('/tmp/hyper-rootless-');
  const layout = path.join(work, 'layout');
  await cp(await busyboxLayout(), layout, { recursive: true });
  // Layer 2, owned by 1000:1000: an application's home.
  const app = path.join(work, 'app');
  await mkdir(path.join(app, 'home', 'app'), { recursive: true });
  await writeFile(path.join(app, 'home', 'app', 'data'), 'private\n');
  await addDirLayer(layout, app, ['--owner=1000', '--group=1000']);
  // Layer 3, as root: a setuid binary and a character device (made here as root).
  const sys = path.join(work, 'sys');
  await mkdir(path.join(sys, 'usr', 'bin'), { recursive: true });
  await mkdir(path.join(sys, 'dev'));
  await writeFile(path.join(sys, 'usr', 'bin', 'suid'), '#!/bin/sh\n');
  await chmod(path.join(sys, 'usr', 'bin', 'suid'), 0o4755);
  await execa('mknod', ['-m', '620', path.join(sys, 'dev', 'console'), 'c', '5', '1']);
  await addDirLayer(layout, sys, ['--owner=0', '--group=0']);

  const cache = path.join(work, 'cache');
  await mkdir(cache);
  await execa('chown', ['-R', '65534:65534', work]);
  await execa('chmod', ['-R', 'a+rX', work]);
  const pull = await execa(
    'setpriv',
    [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      process.execPath,
      path.resolve('dist/cli/index.js'),
      'pull',
      `oci:${layout}`,
    ],
    {
      env: { PATH: process.env.PATH ?? '', HOME: work, HYPER_CACHE_DIR: cache },
      extendEnv: false,
      reject: false,
    },
  );
  expect(pull.stderr).toContain('Built root filesystem');
  expect(pull.exitCode).toBe(0);
  const { stdout } = await execa('sh', ['-c', `ls ${cache}/rootfs/v1/*.ext4`]);
  base = stdout.trim();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

test.each([
  ['/bin/busybox', 'regular', '0755', 0, 0],
  ['/tmp', 'directory', '01777', 0, 0],
  // GNU tar put ./home in layer 2 too, owned 1000:1000 like everything there.
  ['/home', 'directory', '0755', 1000, 1000],
  ['/usr', 'directory', '0755', 0, 0],
  ['/home/app/data', 'regular', '0644', 1000, 1000],
  ['/usr/bin/suid', 'regular', '04755', 0, 0],
  ['/dev/console', 'character special', '0620', 0, 0],
])('%s is a %s with mode %s owned by %d:%d', async (file, type, mode, uid, gid) => {
  const stat = await debugfsStat(file);
  expect(stat).toContain(`Type: ${type}`);
  expect(stat).toMatch(new RegExp(`Mode:\\s+${mode}\\s`));
  expect(stat).toMatch(new RegExp(`User:\\s+${uid}\\s+Group:\\s+${gid}\\s`));
});
