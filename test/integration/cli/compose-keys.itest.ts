import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { busyboxLayout, variantLayout } from '../../support/fixtures.js';
import { snapshotEnv } from '../../support/env.js';

// The compose keys that reach the guest, each seen from inside a real VM.
let stateDir: string;
let work: string;
/** busybox laid out as Docker Hub's is: no entrypoint, a shell as its command (pre_start steps run the image's). */
let shell: string;
let cleanShell: () => Promise<void>;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-it-');
  work = await mkdtemp('/tmp/hyper-compose-keys-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  const variant = await variantLayout(await busyboxLayout(), (config) => {
    const inner = config.config as Record<string, unknown>;
    delete inner.Entrypoint;
    inner.Cmd = ['sh'];
  });
  shell = `oci:${variant.dir}`;
  cleanShell = variant.cleanup;
});

afterAll(async () => {
  await hyper('down', '--time', '0');
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await rm(stateDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
  await cleanShell();
  restoreEnv();
});

test('sysctls, ulimits, shm_size, read_only, hostname, domainname, secrets, configs, labels and the stop signal, from inside the guest', async () => {
  const image = `oci:${await busyboxLayout()}`;
  await writeFile(path.join(work, 'password.txt'), 's3cret\n');
  const compose = path.join(work, 'compose.yml');
  await writeFile(
    compose,
    `services:
  web:
    image: ${shell}
    entrypoint:
      - sh
      - -c
      - "trap 'cat /scratch/pre-stop; echo the service got USR1; exit 0' USR1; httpd -f -p 80 -h / & wait"
    hostname: web-host
    domainname: example.test
    sysctls:
      net.core.somaxconn: 1024
      kernel.msgmax: "16384"
    ulimits:
      nofile: { soft: 2048, hard: 4096 }
      nproc: 500
    shm_size: 128m
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [NET_RAW]
    stop_signal: SIGUSR1
    stop_grace_period: 20s
    group_add: [www-data, "4242"]
    pids_limit: 24
    post_start:
      - command: ["sh", "-c", "grep CapBnd /proc/self/status > /scratch/post-start"]
        privileged: true
    pre_stop:
      - command: ["sh", "-c", "echo pre_stop ran > /scratch/pre-stop"]
    labels:
      team: ci
    logging:
      driver: json-file
    secrets: [db_password]
    configs:
      - source: app_conf
        target: /etc/app.conf
        uid: "100"
        gid: "101"
        mode: 0440
    tmpfs: /scratch
    volumes:
      - seed:/seed
      - type: image
        source: ${image}
        target: /tools
        image:
          subpath: bin
      - type: image
        source: ${image}
        target: /whole
    environment:
      MODE: service
    pre_start:
      - command: ["sh", "-c", "echo seeded by $$(hostname) with MODE=$$MODE > /seed/note"]
        environment:
          MODE: init
      - image: ${shell}
        command: ["sh", "-c", "cp /seed/note /seed/second && chmod 600 /seed/second"]
  tools:
    image: ${image}
    profiles: [debug]
secrets:
  db_password:
    file: ./password.txt
configs:
  app_conf:
    content: port=80
volumes:
  seed:
`,
  );
  const config = await hyperOk('config', '-f', compose, '--format', 'json');
  const plan = JSON.parse(config.stdout) as { services: Record<string, unknown>; order: string[][] };
  expect(Object.keys(plan.services)).toEqual(['web']);
  expect(config.stdout).not.toContain('s3cret');

  const up = await hyperOk('up', '-f', compose, '--wait-timeout', '120');
  expect(up.stderr).toContain('services.web.logging (line 31): ignored: ');
  // QEMU runs under its own seccomp filter, with no_new_privs (mode 2: a filter).
  const qemus = await qemuProcessesUnder(stateDir);
  expect(qemus).toHaveLength(1);
  for (const pid of qemus)
    expect((await readFile(`/proc/${pid}/status`, 'utf8')).match(/^(NoNewPrivs|Seccomp):.*$/gm)).toEqual([
      'NoNewPrivs:\t1',
      'Seccomp:\t2',
    ]);
  const inside = async (script: string): Promise<string> =>
    (await hyperOk('exec', 'web', '--', 'sh', '-c', script)).stdout.trim();
  expect(await inside('hostname; echo $HOSTNAME; cat /proc/sys/kernel/domainname')).toBe(
    'web-host\nweb-host\nexample.test',
  );
  expect(await inside('cat /proc/sys/net/core/somaxconn /proc/sys/kernel/msgmax')).toBe('1024\n16384');
  // The service's own limits, as its process has them.
  const limits = await inside('grep -E "^Max (open files|processes)" /proc/$(pidof httpd)/limits');
  expect(limits).toMatch(/^Max processes\s+500\s+500\s+processes/m);
  expect(limits).toMatch(/^Max open files\s+2048\s+4096\s+files/m);
  expect(await inside('ulimit -n')).toBe('2048');
  // Docker's default set, less NET_RAW, plus NET_ADMIN: for the service and for an exec alike.
  const kept = [0, 1, 3, 4, 5, 6, 7, 8, 10, 12, 18, 27, 29, 31];
  const mask = kept
    .reduce((sum, cap) => sum | (1n << BigInt(cap)), 0n)
    .toString(16)
    .padStart(16, '0');
  expect(await inside('grep CapBnd /proc/$(pidof httpd)/status; grep CapBnd /proc/self/status')).toBe(
    `CapBnd:\t${mask}\nCapBnd:\t${mask}`,
  );
  // A privileged post_start hook ran with every capability, as the guest's init has them.
  expect(await inside('cat /scratch/post-start; grep CapBnd /proc/1/status')).toMatch(
    /^(CapBnd:\t[0-9a-f]+)\n\1$/,
  );
  // pids_limit: the service and every exec are in the guest's pids cgroup, and a 25th process cannot start.
  expect(await inside('cat /proc/$(pidof httpd)/cgroup /proc/self/cgroup')).toBe('0::/service\n0::/service');
  // Counted with shell builtins only, so the count itself needs no free slot.
  const tasks = async (): Promise<number> =>
    Number(
      await inside(
        'n=0; for f in /proc/[0-9]*/cgroup; do read -r line < "$f" 2>/dev/null && [ "$line" = 0::/service ] && n=$((n + 1)); done; echo $n',
      ),
    );
  const before = await tasks();
  expect(await inside('(for i in $(seq 40); do sleep 1 & done) 2>&1 | grep -c fork')).toBe('1');
  // The sleeps that did start end and are reaped before the next exec that needs them gone.
  const deadline = Date.now() + 60_000;
  while ((await tasks()) > before) {
    if (Date.now() > deadline) throw new Error(`the service's cgroup still holds ${await tasks()} tasks`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  // group_add: the service and every exec are in www-data (33) and 4242 besides root's own group.
  expect(await inside('grep Groups /proc/$(pidof httpd)/status; grep Groups /proc/self/status')).toMatch(
    /^Groups:\t0 33 4242\s*\nGroups:\t0 33 4242\s*$/,
  );
  expect(await inside('awk \'$2 == "/dev/shm" { print $4 }\' /proc/mounts')).toContain('size=131072k');
  expect(await inside('touch /written 2>&1; echo $?')).toMatch(/Read-only file system\n1$/);
  expect(await inside('touch /scratch/written && echo ok')).toBe('ok');
  expect(await inside('stat -c "%a %u %g %n" /run/secrets/db_password /etc/app.conf')).toBe(
    '444 0 0 /run/secrets/db_password\n440 100 101 /etc/app.conf',
  );
  expect(await inside('cat /run/secrets/db_password /etc/app.conf')).toBe('s3cret\nport=80');
  // pre_start: two one-shot VMs ran in order on the service's volume, each its own host, and are gone.
  expect(
    await inside('cat /seed/note; stat -c "%a %n" /seed/second; cmp /seed/note /seed/second && echo same'),
  ).toBe('seeded by web-pre-start-1 with MODE=init\n600 /seed/second\nsame');
  expect(up.stderr).toMatch(/web: pre_start step 1 of 2 \(web-pre-start-1\) exited 0 after \d+ ms/);
  expect(up.stderr).toMatch(/web: pre_start step 2 of 2 \(web-pre-start-2\) exited 0 after \d+ ms/);
  // type: image: the image's bin directory, and the whole image, read-only.
  expect(await inside('ls /tools/busybox /whole/bin/busybox; /tools/busybox true && echo runs')).toBe(
    '/tools/busybox\n/whole/bin/busybox\nruns',
  );
  expect(await inside('touch /tools/x 2>&1; echo $?; touch /whole/x 2>&1; echo $?')).toMatch(
    /Read-only file system\n1\n.*Read-only file system\n1$/,
  );
  const labelled = JSON.parse((await hyperOk('ps', '--json', '--filter', 'label=team=ci')).stdout) as {
    name: string;
  }[];
  expect(labelled.map((row) => row.name)).toEqual(['web']);
  expect(JSON.parse((await hyperOk('ps', '--json')).stdout)).toHaveLength(1);

  // No --time: the service's own stop_grace_period, and its stop signal reaches it.
  await hyperOk('stop', 'web');
  // The pre_stop hook ran before the stop signal.
  expect((await hyperOk('logs', 'web')).stdout).toContain('pre_stop ran\nthe service got USR1');
  expect((await hyperOk('wait', 'web')).stdout.trim()).toBe('0');

  await hyperOk('down');
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
});

/** The `hyper ps --json` row of one VM. */
async function psRow(name: string): Promise<{ state: string; exitCode: number | null; restarts: number }> {
  const rows = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
    name: string;
    state: string;
    exitCode: number | null;
    restarts: number;
  }[];
  const row = rows.find((r) => r.name === name);
  if (!row) throw new Error(`hyper ps has no ${name}`);
  return row;
}

test('restart: on-failure:2 starts a service that always fails 3 times in all, then reports its exit code', async () => {
  const image = `oci:${await busyboxLayout()}`;
  const compose = path.join(work, 'restart.yml');
  // A healthcheck that never passes: up waits until the service has stopped for good.
  await writeFile(
    compose,
    `services:
  flaky:
    image: ${image}
    entrypoint: ["sh", "-c", "echo a run of flaky; exit 3"]
    restart: on-failure:2
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
`,
  );
  try {
    const up = await hyper('up', '-f', compose, '--wait-timeout', '120');
    expect(up.code).toBe(125);
    expect(up.stderr).toContain('flaky exited with code 3 before it was healthy, after 2 restarts');
    const logs = await hyperOk('logs', 'flaky');
    expect(logs.stdout.match(/a run of flaky/g)).toHaveLength(3);
    expect(await psRow('flaky')).toMatchObject({ state: 'exited', exitCode: 3, restarts: 2 });
    expect((await hyperOk('ps')).stdout).toMatch(/flaky .*exited \(3\), restarted 2 times/);
  } finally {
    await hyper('down', '--time', '0');
  }
});

test('restart: always starts a service again after it exits, until it is stopped', async () => {
  const image = `oci:${await busyboxLayout()}`;
  const compose = path.join(work, 'always.yml');
  await writeFile(
    compose,
    `services:\n  looper:\n    image: ${image}\n    entrypoint: ["sh", "-c", "echo a run of looper; sleep 0.2"]\n    restart: always\n`,
  );
  try {
    await hyperOk('up', '-f', compose, '--wait-timeout', '120');
    // Back-off: 100, 200, 400 ms... a few restarts come within seconds; wait for them however slow the machine.
    while ((await psRow('looper')).restarts < 3) await new Promise((resolve) => setTimeout(resolve, 200));
    await hyperOk('stop', '--time', '30', 'looper');
    const stopped = await psRow('looper');
    expect(stopped.state).toBe('exited');
    // Stopped means stopped: no restart follows.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await psRow('looper')).toEqual(stopped);
    // A restart is counted as its back-off begins: a stop in the back-off leaves no run for the last one.
    const runs = (await hyperOk('logs', 'looper')).stdout.match(/a run of looper/g)?.length ?? 0;
    expect([stopped.restarts, stopped.restarts + 1]).toContain(runs);
  } finally {
    await hyper('down', '--time', '0');
  }
});

test('a failing post_start hook fails the start; a failing pre_stop hook aborts hyper stop, not hyper down', async () => {
  const image = `oci:${await busyboxLayout()}`;
  const seeding = path.join(work, 'post-start.yml');
  await writeFile(
    seeding,
    `services:\n  seeded:\n    image: ${image}\n    post_start:\n      - command: ["sh", "-c", "echo seeding failed >&2; exit 3"]\n`,
  );
  const up = await hyper('up', '-f', seeding);
  expect({ code: up.code, stderr: up.stderr }).toEqual({
    code: 125,
    stderr: expect.stringContaining(
      'service seeded failed to start: post_start hook 1 (sh -c echo seeding failed >&2; exit 3) exited with code 3:\nseeding failed',
    ) as unknown,
  });
  // Compose stops a container whose post_start hook fails: so is the VM.
  expect((await psRow('seeded')).state).toBe('exited');
  await hyperOk('down', '--time', '0');

  const stubborn = path.join(work, 'pre-stop.yml');
  await writeFile(
    stubborn,
    `services:\n  stubborn:\n    image: ${image}\n    pre_stop:\n      - command: ["sh", "-c", "exit 4"]\n`,
  );
  await hyperOk('up', '-f', stubborn);
  const stop = await hyper('stop', 'stubborn');
  expect({ code: stop.code, stderr: stop.stderr }).toEqual({
    code: 125,
    stderr: 'hyper stop: pre_stop hook 1 (sh -c exit 4) exited with code 4\n',
  });
  expect((await psRow('stubborn')).state).toBe('running');
  const down = await hyperOk('down', '--time', '0');
  expect(down.stderr).toContain('warning: stubborn: pre_stop hook 1 (sh -c exit 4) exited with code 4\n');
  expect(down.stderr).toContain('stubborn: stopped');
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
});

test('a failing pre_start step fails up with its output; the service never boots and the step VM is gone', async () => {
  const gated = path.join(work, 'pre-start.yml');
  await writeFile(
    gated,
    `services:\n  gated:\n    image: ${shell}\n    pre_start:\n      - command: ["sh", "-c", "echo migration failed >&2; exit 5"]\n`,
  );
  const up = await hyper('up', '-f', gated);
  expect({ code: up.code, stderr: up.stderr }).toEqual({
    code: 125,
    stderr: expect.stringContaining(
      'service gated: pre_start step 1 of 1 (gated-pre-start-1) exited with code 5; the end of its output:\nmigration failed',
    ) as unknown,
  });
  expect(JSON.parse((await hyperOk('ps', '--json')).stdout)).toEqual([]);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  // Neither the step nor the service that never booted is left on the job network.
  const network = JSON.parse(
    await readFile(path.join(stateDir, 'network.json'), 'utf8').catch(() => '{}'),
  ) as {
    members?: { service: string }[];
  };
  expect((network.members ?? []).map((m) => m.service)).toEqual([]);
  await hyperOk('down', '--time', '0');
});

test('refused keys, bad counts and a missing secret file stop up before anything boots', async () => {
  const image = `oci:${await busyboxLayout()}`;
  const cases: [string, string][] = [
    [
      `services:\n  app:\n    image: ${image}\n    network_mode: host\n`,
      "services.app.network_mode (line 4): host or another service's network would reach past the VM boundary",
    ],
    [
      `services:\n  app:\n    image: ${image}\n    devices: ["/dev/kvm:/dev/kvm"]\n`,
      'services.app.devices (line 4): host devices are not passed into service VMs',
    ],
    [
      `services:\n  app:\n    image: ${image}\n    deploy:\n      replicas: 0\n`,
      'services.app.deploy.replicas (line 5): "0" is not a number of replicas: give a whole number of at least 1',
    ],
    [
      `services:\n  app:\n    image: ${image}\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./missing.txt\n`,
      `secrets.pw.file (line 7): cannot read ${path.join(work, 'missing.txt')}`,
    ],
    [
      `services:\n  app:\n    image: ${image}\n    stop_signl: SIGINT\n`,
      'services.app.stop_signl (line 4) is not a known key; did you mean stop_signal?',
    ],
  ];
  for (const [text, message] of cases) {
    const compose = path.join(work, 'bad.yml');
    await writeFile(compose, text);
    const result = await hyper('up', '-f', compose);
    expect({ code: result.code, stderr: result.stderr }).toEqual({
      code: 125,
      stderr: expect.stringContaining(message) as unknown,
    });
    const config = await hyper('config', '-f', compose);
    expect(config.code).toBe(125);
    expect(config.stderr).toContain(message);
  }
  expect(await readdir(path.join(stateDir, 'vms')).catch(() => [])).not.toContain('app');
});
