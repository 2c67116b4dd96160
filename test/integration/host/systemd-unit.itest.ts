import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { defaultSocket } from '../../../src/cli/serve-command.js';
import { hostSettings } from '../../../src/engine/settings.js';
import { projectRoot } from '../../../src/project-root.js';

// packaging/systemd/hyper-serve.service as an operator installs it. Nothing is
// started: systemd-analyze verify only loads the unit and checks it. verify
// also checks that ExecStart's binary exists, so it runs on a copy whose
// ExecStart is this checkout's CLI (node + dist/cli/index.js) instead of
// /usr/local/bin/hyper.
const UNIT = 'hyper-serve.service';
const INSTALLED_HYPER = '/usr/local/bin/hyper';

let unitText: string;
let work: string;

beforeAll(async () => {
  unitText = await readFile(path.join(projectRoot(), 'packaging', 'systemd', UNIT), 'utf8');
  work = await mkdtemp(path.join(os.tmpdir(), 'hyper-unit-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Every `Key=value` of the unit, in order (comments and section headers left out). */
function settings(text: string): [key: string, value: string][] {
  return text
    .split('\n')
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1)];
    });
}

function values(key: string): string[] {
  return settings(unitText)
    .filter(([k]) => k === key)
    .map(([, value]) => value);
}

/** The unit with ExecStart pointing at this checkout's CLI, written into `dir` under the unit's own name. */
async function localCopy(dir: string, text = unitText): Promise<string> {
  const cli = `${process.execPath} ${path.join(projectRoot(), 'dist', 'cli', 'index.js')}`;
  const local = text.replace(/^ExecStart=\/usr\/local\/bin\/hyper /m, `ExecStart=${cli} `);
  expect(local).toContain(`ExecStart=${cli} serve `);
  const file = path.join(dir, UNIT);
  await writeFile(file, local);
  return file;
}

/** systemd-analyze verify on one unit file; its exit code and the lines it printed about that file. */
async function verify(file: string): Promise<{ code: number | undefined; aboutUnit: string[] }> {
  const result = await execa('systemd-analyze', ['verify', file], { reject: false, all: true });
  // Unknown keys and bad values are warnings (exit 0), so the lines naming the unit count too;
  // lines about other units installed on this host do not.
  const aboutUnit = (result.all ?? '')
    .split('\n')
    .filter((line) => line.includes(UNIT) || line.startsWith(file));
  return { code: result.exitCode, aboutUnit };
}

test('the unit runs hyper serve as root on the root default socket, for the hyper group, with the settings it reads', () => {
  expect(values('ExecStart')).toEqual([
    `${INSTALLED_HYPER} serve --socket /run/hyper/docker.sock --group hyper --stop-containers`,
  ]);
  expect(values('User')).toEqual([]);
  // The socket is hyper serve's own default as root, in the RuntimeDirectory systemd makes.
  expect(defaultSocket({}, 0)).toBe('/run/hyper/docker.sock');
  expect(values('RuntimeDirectory')).toEqual(['hyper']);

  // The variable names are the ones the engine's host settings read.
  const environment = Object.fromEntries(
    values('Environment').map((entry) => entry.split('=', 2) as [string, string]),
  );
  const host = hostSettings(environment, '/root');
  expect(host.stateDir).toBe('/var/lib/hyper');
  expect(host.cacheDir).toBe('/var/cache/hyper');
  // The VMs' cgroups inside the service's own, which systemd hands over.
  expect(host.cgroupParent).toBe('vms');
  expect(values('Delegate')).toEqual(['yes']);
  expect(values('ProtectControlGroups')).toEqual([]);
  expect(values('StateDirectory')).toEqual(['hyper']);
  expect(values('CacheDirectory')).toEqual(['hyper']);

  expect(values('KillSignal')).toEqual(['SIGTERM']);
  expect(values('Restart')).toEqual(['on-failure']);
  expect(Number(values('TimeoutStopSec')[0])).toBeGreaterThanOrEqual(60);
  expect(values('After')).toContain('network-online.target');
});

test('systemd-analyze verify accepts the unit, with no warning about it', async () => {
  const dir = await mkdtemp(path.join(work, 'good-'));
  const result = await verify(await localCopy(dir));
  expect(result.aboutUnit).toEqual([]);
  expect(result.code).toBe(0);
});

test('the check bites: a bad value and an unknown key are caught, and so is the uninstalled binary', async () => {
  const dir = await mkdtemp(path.join(work, 'bad-'));
  const broken = unitText.replace(/^KillMode=mixed$/m, 'KillMode=mixd\nNoSuchKey=1');
  expect(broken).not.toBe(unitText);
  const bad = await verify(await localCopy(dir, broken));
  expect(bad.aboutUnit.join('\n')).toMatch(/kill mode.*mixd/i);
  expect(bad.aboutUnit.join('\n')).toContain('NoSuchKey');

  // As shipped, ExecStart names /usr/local/bin/hyper, which this checkout does not install.
  if (existsSync(INSTALLED_HYPER)) return;
  const shippedDir = await mkdtemp(path.join(work, 'shipped-'));
  const shipped = path.join(shippedDir, UNIT);
  await writeFile(shipped, unitText);
  const missing = await verify(shipped);
  expect(missing.code).not.toBe(0);
  expect(missing.aboutUnit.join('\n')).toContain(`${INSTALLED_HYPER} is not executable`);
});
