import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { httpGet } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { forgetServiceTemplates } from '../../support/templates.js';
import { MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';
import { expectNothingLeft } from '../../support/runner-expect.js';

// dist/main with a `services:` input, then dist/post, as the runner runs them.
// The services are busybox httpd VMs from the OCI layout the tests build.
let image: string;
beforeAll(async () => {
  image = `oci:${await busyboxLayout()}`;
});

const SERVICES = (image: string) => `
web:
  image: ${image}
  ports: ['80']
  options: --health-cmd "wget -q -O /dev/null http://127.0.0.1:80/" --health-interval 1s
api:
  image: ${image}
  ports: ['8080:80']
  env:
    ROLE: api
  depends-on:
    web: { condition: service_healthy }
`;

test('services boot in dependency order, healthy, with outputs, port variables and a summary; post tears them down', async () => {
  await forgetServiceTemplates('web', 'api');
  const job = await RunnerJob.create();
  try {
    const services = SERVICES(image);
    const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '120' });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    expect(main.stdout).toContain('web: healthy after');

    const outputs = await job.outputs();
    const context = JSON.parse(outputs.services as string) as Record<
      string,
      { ports: Record<string, string> }
    >;
    expect(context.api?.ports).toEqual({ '80': '8080' });
    const webPort = context.web?.ports['80'] as string;
    expect(Number(webPort)).toBeGreaterThan(0);
    const env = await job.env();
    expect(env.HYPER_WEB_PORT_80).toBe(webPort);
    expect(env.HYPER_API_PORT_80).toBe('8080');
    expect(await httpGet(`http://127.0.0.1:${webPort}/`)).toContain('hello');
    expect(await httpGet('http://127.0.0.1:8080/')).toContain('hello');

    // The dependent was created only after its dependency was healthy.
    const record = async (name: string) =>
      JSON.parse(
        await readFile(path.join(env.HYPER_STATE_DIR as string, 'vms', name, 'vm.json'), 'utf8'),
      ) as { createdAt: string };
    const lines = main.stdout.split('\n');
    expect(lines.findIndex((l) => l.includes('web: healthy after'))).toBeLessThan(
      lines.findIndex((l) => l.includes('api: VM running')),
    );
    expect(Date.parse((await record('api')).createdAt)).toBeGreaterThan(
      Date.parse((await record('web')).createdAt),
    );

    const summary = await readFile(job.file('summary'), 'utf8');
    expect(summary).toContain(
      '<th>service</th><th>image</th><th>accel</th><th>started from</th><th>boot ms</th><th>healthy ms</th><th>ports</th><th>memory</th>',
    );
    // templates defaults to auto: each service VM is a clone of the boot template,
    // and each healthy service is kept as its service template.
    expect(summary).toMatch(
      /<td>web<\/td><td>oci:[^<]+@sha256:[0-9a-f]{64}<\/td><td>tcg<\/td><td>boot template<\/td>/,
    );
    expect(main.stdout).toMatch(
      /web: kept as service template \S+\/templates\/service\/web-[0-9a-f]{16} in \d+ ms/,
    );

    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    expect(post.stdout).toContain('::group::Logs of web');
    expect(post.stdout).not.toContain('::warning::');
    const usage = await readFile(job.file('summary'), 'utf8');
    expect(usage).toContain(
      '<th>service</th><th>state at teardown</th><th>VM-seconds</th><th>CPU-seconds</th><th>peak memory</th><th>own / shared memory</th>',
    );
    expect(usage).toMatch(/<td>web<\/td><td>running<\/td><td>[\d.]+<\/td>/);
    await expectNothingLeft(job);
  } finally {
    await job.remove();
  }
});

test('a later job starts the same services from their service templates; the summary says so', async () => {
  const job = await RunnerJob.create();
  try {
    const main = await job.step(MAIN, { services: SERVICES(image), accel: 'tcg', 'wait-timeout': '120' });
    expect(main.exitCode).toBe(0);
    expect(main.stdout).toMatch(/web: started from service template \S+\/web-[0-9a-f]{16} in \d+ ms/);
    const summary = await readFile(job.file('summary'), 'utf8');
    for (const name of ['web', 'api'])
      expect(summary).toMatch(
        new RegExp(`<td>${name}</td><td>oci:[^<]+</td><td>tcg</td><td>service template</td>`),
      );
    const env = await job.env();
    expect(await httpGet(`http://127.0.0.1:${env.HYPER_WEB_PORT_80}/`)).toContain('hello');
    expect(await httpGet('http://127.0.0.1:8080/')).toContain('hello');
    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    await expectNothingLeft(job);
  } finally {
    await job.remove();
  }
});

describe('bad input fails main with a clear message and leaves nothing after post', () => {
  test.each([
    ['malformed YAML', 'db:\n  image: [redis\n', /::error::input "services": YAML error at line \d+/],
    [
      'an unknown key',
      'db:\n  imgae: redis\n',
      /::error::input "services": services\.db\.imgae \(line 2\) is not a known key; valid keys: image, /,
    ],
    [
      'an unsupported option',
      'db:\n  image: redis\n  options: --privileged\n',
      /::error::.*--privileged.*not supported/,
    ],
    [
      'two services asking for one host port',
      'a:\n  image: redis\n  ports: ["6379:6379"]\nb:\n  image: redis\n  ports: ["6379:6380"]\n',
      /::error::.*6379/,
    ],
    [
      'a dependency cycle',
      'a:\n  image: redis\n  depends-on: [b]\nb:\n  image: redis\n  depends-on: [a]\n',
      /::error::.*a -> b -> a/,
    ],
  ])('%s', async (_what, services, message) => {
    const job = await RunnerJob.create();
    try {
      const main = await job.step(MAIN, { services, accel: 'tcg' });
      expect(main.exitCode).toBe(1);
      expect(main.stdout).toMatch(message);
      const post = await job.step(POST, {});
      expect(post.exitCode).toBe(0);
      await expectNothingLeft(job);
    } finally {
      await job.remove();
    }
  });

  test('a templates input that is not a mode', async () => {
    const job = await RunnerJob.create();
    try {
      const main = await job.step(MAIN, {
        services: `web:\n  image: ${image}\n`,
        accel: 'tcg',
        templates: 'sometimes',
      });
      expect(main.exitCode).toBe(1);
      expect(main.stdout).toContain(
        '::error::input "templates": "sometimes" is not a template mode; use auto (start VMs as clones of boot templates, made when missing), off (boot every VM in full) or refresh (make new boot templates first)',
      );
      const post = await job.step(POST, {});
      expect(post.exitCode).toBe(0);
      await expectNothingLeft(job);
    } finally {
      await job.remove();
    }
  });

  test('a service that never becomes healthy fails after wait-timeout and shows its log', async () => {
    const job = await RunnerJob.create();
    try {
      const services = `sick:\n  image: ${image}\n  command: ["-p", "80"]\n  options: --health-cmd "echo not today >&2; exit 1"\n`;
      const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '5' });
      expect(main.exitCode).toBe(1);
      expect(main.stdout).toMatch(
        /::error::service sick: sick did not become healthy within 5 s \(last: exit code 1: not today\)/,
      );
      expect(main.stdout).toContain('::group::Log of sick');
      await job.step(POST, {});
      await expectNothingLeft(job);
    } finally {
      await job.remove();
    }
  });

  test('a service that exits at once shows its exit code and log', async () => {
    const job = await RunnerJob.create();
    try {
      // A published port gives the start a probe that cannot pass: without one, a
      // service is up once it has started, and one that exits a moment later may already count as up.
      const services = `dies:\n  image: ${image}\n  ports: ['80']\n  entrypoint: /bin/sh\n  command: ["-c", "echo giving up >&2; exit 3"]\n`;
      const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '60' });
      expect(main.exitCode).toBe(1);
      expect(main.stdout).toMatch(/::error::service dies.*(exited with code 3|exited at once with code 3)/);
      expect(main.stdout).toContain('giving up');
      await job.step(POST, {});
      await expectNothingLeft(job);
    } finally {
      await job.remove();
    }
  });
});

test('a service that exits after it was healthy, while a later wave boots, fails main with its exit code and log', async () => {
  // Ordered by cause, not by time: "dies" is healthy once its port 8080
  // listens; it exits only when "later" (the next wave, booted after "dies"
  // was declared healthy) answers on port 80; and "later" is healthy only
  // once "dies" no longer answers, which its init allows only after it has
  // reported the exit. So the check after the last wave always finds "dies"
  // exited, and without that check main would always succeed.
  const job = await RunnerJob.create();
  try {
    const services = `
dies:
  image: ${image}
  entrypoint: /bin/sh
  command: ["-c", "httpd -p 8080 -h /www; until wget -q -O /dev/null http://later:80/ 2>/dev/null; do sleep 0.2; done; echo giving up after health >&2; exit 4"]
  ports: ['8080']
later:
  image: ${image}
  ports: ['80']
  options: --health-cmd "! wget -q -O /dev/null http://dies:8080/" --health-interval 1s
  depends-on:
    dies: { condition: service_healthy }
`;
    const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '120' });
    expect(main.exitCode).toBe(1);
    expect(main.stdout).toContain(
      '::error::service dies exited with code 4 after it was healthy; the end of its log:%0Agiving up after health',
    );
    expect(main.stdout).toContain('later: healthy after');
    await job.step(POST, {});
    await expectNothingLeft(job);
  } finally {
    await job.remove();
  }
});

test('volumes in a services input: a workspace directory is served from the VM; post removes the volumes with the state', async () => {
  const job = await RunnerJob.create();
  const workspace = await mkdtemp('/tmp/hyper-workspace-');
  try {
    await mkdir(path.join(workspace, 'site'));
    await writeFile(path.join(workspace, 'site', 'index.html'), 'from the workspace\n');
    const services = `web:\n  image: ${image}\n  ports: ['80']\n  volumes: ['./site:/www:ro', 'webdata:/data']\n`;
    const main = await job.step(MAIN, { services, accel: 'tcg' }, { GITHUB_WORKSPACE: workspace });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    const env = await job.env();
    expect(await httpGet(`http://127.0.0.1:${env.HYPER_WEB_PORT_80}/`)).toBe('from the workspace\n');
    expect(await readdir(path.join(env.HYPER_STATE_DIR as string, 'volumes'))).toEqual(['webdata.qcow2']);
    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    expect(post.stdout).not.toContain('::warning::');
    await expectNothingLeft(job);
  } finally {
    await job.remove();
    await rm(workspace, { recursive: true, force: true });
  }
});
