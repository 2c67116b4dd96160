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

test('its work folder from .runner (a BOM allowed), else _work, read-write; its externals read-only', () => {
  expect(runnerBindDirs('/r', '\uFEFF{"agentName":"a","workFolder":"w/x"}')).toEqual([
    { dir: '/r/w/x', readOnly: false },
    { dir: '/r/externals', readOnly: true },
  ]);
  expect(runnerBindDirs('/r', undefined)[0]).toEqual({ dir: '/r/_work', readOnly: false });
  expect(runnerBindDirs('/r', 'not json')[0]).toEqual({ dir: '/r/_work', readOnly: false });
});

test("a work folder outside the runner's directory is not taken from the settings the runner's user can edit", () => {
  for (const workFolder of ['/', '/srv/work', '..', '../other', '.'])
    expect(runnerBindDirs('/r', JSON.stringify({ workFolder }))[0]).toEqual({
      dir: '/r/_work',
      readOnly: false,
    });
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
      { dir: path.join(runner, '_w'), readOnly: false },
      { dir: path.join(runner, 'externals'), readOnly: true },
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
