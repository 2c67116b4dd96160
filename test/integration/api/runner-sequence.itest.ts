import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type TestRegistry } from '../../support/registry/registry.js';
import { docker, type RunningDaemon, startApiFixture, stopApiFixture } from '../../support/serve.js';

// What the GitHub runner does for a job with a `container:` and `services:`
// (actions/runner: ContainerOperationProvider.cs, DockerCommandManager.cs,
// StepHost.cs), command by command, with the real docker CLI against
// `hyper serve`. The runner hands docker one argument string that .NET splits;
// the arrays below are that split (single quotes are not special there, so
// '{{.Server.APIVersion}}' keeps them). Everything runs in real microVMs.
let registry: TestRegistry;
let daemon: RunningDaemon;
let stateDir: string;
let work: string;
let image: string;

/** The runner's instance label: a bare label key, sha256 of its .runner file, 6 hex digits. */
const LABEL = 'a1b2c3';

beforeAll(async () => {
  ({ registry, image, stateDir, daemon } = await startApiFixture(
    '/tmp/hyper-runner-it-',
    'library/busybox-httpd',
  ));
  work = await mkdtemp('/tmp/hyper-runner-work-');
});

afterAll(async () => {
  await stopApiFixture({ registry, daemon, stateDir });
  await rm(work, { recursive: true, force: true });
});

/** One docker call as the runner makes it: it fails the job on a non-zero exit where the runner does. */
async function run(args: string[], options: { env?: Record<string, string>; input?: string } = {}) {
  const result = await docker(daemon, args, options);
  return { ...result, lines: result.stdout.split('\n').filter((line) => line.trim() !== '') };
}

async function must(args: string[], options: { env?: Record<string, string>; input?: string } = {}) {
  const result = await run(args, options);
  if (result.code !== 0)
    throw new Error(
      `docker ${args.join(' ')} exited ${result.code}:\n${result.stderr}\n${daemon.output().slice(-2000)}`,
    );
  return result;
}

test("the runner's sequence: services and a job container, steps run by exec, then cleanup", async () => {
  // 1. The engine's API version, as the runner reads it: quotes and all, then its regex.
  const server = await must(['version', '--format', "'{{.Server.APIVersion}}'"]);
  const version = /\d+\.\d+(\.\d+)?/.exec(server.lines[0] ?? '')?.[0] ?? '';
  expect(server.lines[0]).toBe("'1.47'");
  expect(Number(version.split('.')[1])).toBeGreaterThanOrEqual(35);
  await must(['version', '--format', "'{{.Client.APIVersion}}'"]);

  // 2. Stale containers and networks of this runner, by its label.
  for (const id of (await must(['ps', '--all', '--quiet', '--no-trunc', '--filter', `label=${LABEL}`])).lines)
    await run(['rm', '--force', id]);
  await run(['network', 'prune', '--force', '--filter', `label=${LABEL}`]);

  // 3. The job's network.
  const network = `github_network_${randomBytes(16).toString('hex')}`;
  await must(['network', 'create', '--label', LABEL, network]);

  // 4. The service: pull, create with the runner's flags (options: verbatim), start, check, ports.
  await must(['pull', image]);
  const serviceName = `web_${'busybox-httpd'.replace(/[^A-Za-z_]/g, '')}_${randomBytes(3).toString('hex')}`;
  const service = (
    await must([
      'create',
      '--name',
      serviceName,
      '--label',
      LABEL,
      '--network',
      network,
      '--network-alias',
      'web',
      '-p',
      '80',
      '--health-cmd',
      'wget -q -O /dev/null http://127.0.0.1/',
      '--health-interval',
      '1s',
      '-e',
      'GITHUB_ACTIONS=true',
      '-e',
      'CI=true',
      image,
    ])
  ).lines[0] as string;
  await must(['start', service]);
  const running = await must([
    'ps',
    '--all',
    '--filter',
    `id=${service}`,
    '--filter',
    'status=running',
    '--no-trunc',
    '--format',
    '{{.ID}} {{.Status}}',
  ]);
  expect(running.lines[0]?.startsWith(service)).toBe(true);
  const ports = (await must(['port', service])).lines.map(
    (line) => /^(?<targetPort>\d+)\/(?<proto>\w+) -> (?<host>.+):(?<hostPort>\d+)$/.exec(line)?.groups,
  );
  expect(ports).toEqual([expect.objectContaining({ targetPort: '80', proto: 'tcp', host: '127.0.0.1' })]);

  // 5. The job container, with the runner's well-known mounts, docker.sock first.
  const repo = path.join(work, 'repo', 'repo');
  for (const dir of [repo, '_temp', '_actions', '_tool', '_temp/_github_home', '_temp/_github_workflow'])
    await mkdir(path.resolve(work, dir), { recursive: true });
  const externals = await mkdtemp('/tmp/hyper-runner-externals-');
  await writeFile(path.join(externals, 'marker'), 'externals\n');
  const jobName = `job_busyboxhttpd_${randomBytes(3).toString('hex')}`;
  const create = await must([
    'create',
    '--name',
    jobName,
    '--label',
    LABEL,
    '--workdir',
    '/__w/repo/repo',
    '--network',
    network,
    '-e',
    'HOME=/github/home',
    '-e',
    'GITHUB_ACTIONS=true',
    '-e',
    'CI=true',
    '-v',
    '/var/run/docker.sock:/var/run/docker.sock',
    '-v',
    `${work}:/__w`,
    '-v',
    `${externals}:/__e:ro`,
    '-v',
    `${work}/_temp:/__w/_temp`,
    '-v',
    `${work}/_actions:/__w/_actions`,
    '-v',
    `${work}/_tool:/__w/_tool`,
    '-v',
    `${work}/_temp/_github_home:/github/home`,
    '-v',
    `${work}/_temp/_github_workflow:/github/workflow`,
    '--entrypoint',
    'tail',
    image,
    '-f',
    '/dev/null',
  ]);
  const job = create.lines[0] as string;
  await must(['start', job]);
  // The Docker socket is there in the job container: this daemon's own API (docker-socket.itest.ts drives it).
  expect((await run(['exec', job, 'test', '-S', '/var/run/docker.sock'])).code).toBe(0);
  const env = (await must(['inspect', '--format', '{{range .Config.Env}}{{println .}}{{end}}', job])).lines;
  expect(env).toEqual(expect.arrayContaining(['PATH=/bin', 'HOME=/github/home', 'CI=true']));

  // 6. The health loop, as the runner polls it.
  let health = '';
  for (let attempt = 0; attempt < 120; attempt++) {
    health = (
      await must([
        'inspect',
        '--format={{if .Config.Healthcheck}}{{print .State.Health.Status}}{{end}}',
        service,
      ])
    ).stdout.trim();
    if (health !== 'starting') break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  expect(health).toBe('healthy');

  // 7. A step: its script written by the runner under _temp, run by exec -i with stdin closed at once.
  await writeFile(
    path.join(work, '_temp', 'step.sh'),
    [
      'echo "workspace is $GITHUB_WORKSPACE" > "$GITHUB_WORKSPACE/out.txt"',
      'wget -q -O "$GITHUB_WORKSPACE/page.html" http://web/',
      'cat /__e/marker',
      'echo step-done',
    ].join('\n'),
  );
  await chmod(path.join(work, '_temp', 'step.sh'), 0o755);
  const release = await run(['exec', job, 'sh', '-c', 'cat /etc/*release | grep ^ID']);
  expect(release.stderr).not.toContain('Error');
  const step = await must(
    [
      'exec',
      '-i',
      '--workdir',
      '/__w/repo/repo',
      '-e',
      'GITHUB_WORKSPACE',
      job,
      'sh',
      '-e',
      '/__w/_temp/step.sh',
    ],
    { env: { GITHUB_WORKSPACE: '/__w/repo/repo' }, input: '' },
  );
  expect(step.lines).toEqual(['externals', 'step-done']);
  // What the step wrote under /__w is on the host, and it reached the service by its alias.
  expect(await readFile(path.join(repo, 'out.txt'), 'utf8')).toBe('workspace is /__w/repo/repo\n');
  expect(await readFile(path.join(repo, 'page.html'), 'utf8')).toContain(
    'hello from a hyper-services microVM',
  );
  const failing = await run(['exec', '-i', job, 'sh', '-e', '-c', 'false; echo not reached'], { input: '' });
  expect(failing.code).toBe(1);

  // 8. Cleanup, as the post-job step does it.
  const logs = await must(['logs', '--details', service]);
  expect(logs.code).toBe(0);
  await must(['rm', '--force', job]);
  await must(['rm', '--force', service]);
  await must(['network', 'rm', network]);
  expect((await must(['ps', '--all', '--quiet', '--filter', `label=${LABEL}`])).lines).toEqual([]);
  await rm(externals, { recursive: true, force: true });
});
