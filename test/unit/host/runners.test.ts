import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findRunnerBindDirs, runnerBindDirs, runnerDirOfUnit } from '../../../src/host/runners.js';

test('a runner unit names its directory by WorkingDirectory, else by where runsvc.sh is', () => {
  expect(
    runnerDirOfUnit(
      '[Service]\nExecStart=/home/runner/actions-runner/runsvc.sh\nUser=runner\nWorkingDirectory=/home/runner/actions-runner\n',
    ),
  ).toBe('/home/runner/actions-runner');
  expect(runnerDirOfUnit('[Service]\nExecStart=/opt/runner/runsvc.sh\n')).toBe('/opt/runner');
  expect(runnerDirOfUnit('[Service]\nExecStart=runsvc.sh\n')).toBeUndefined();
});

test('its work folder from .runner (a BOM allowed), else _work; and its externals', () => {
  expect(runnerBindDirs('/r', '\uFEFF{"agentName":"a","workFolder":"/srv/work"}')).toEqual([
    '/srv/work',
    '/r/externals',
  ]);
  expect(runnerBindDirs('/r', '{"workFolder":"w"}')).toEqual(['/r/w', '/r/externals']);
  expect(runnerBindDirs('/r', undefined)).toEqual(['/r/_work', '/r/externals']);
  expect(runnerBindDirs('/r', 'not json')).toEqual(['/r/_work', '/r/externals']);
});

test('findRunnerBindDirs reads the runner units of a systemd directory, and nothing else', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'hyper-runners-'));
  try {
    const units = path.join(root, 'system');
    const runner = path.join(root, 'actions-runner');
    await mkdir(units);
    await mkdir(runner);
    await writeFile(path.join(runner, '.runner'), '{"workFolder":"_w"}');
    await writeFile(
      path.join(units, 'actions.runner.org-repo.box.service'),
      `[Service]\nExecStart=${runner}/runsvc.sh\nWorkingDirectory=${runner}\n`,
    );
    await writeFile(path.join(units, 'nginx.service'), '[Service]\nWorkingDirectory=/var/www\n');
    expect(await findRunnerBindDirs([units, path.join(root, 'missing')])).toEqual([
      path.join(runner, '_w'),
      path.join(runner, 'externals'),
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
