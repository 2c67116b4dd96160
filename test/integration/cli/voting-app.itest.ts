import { chmod, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hyper, hyperOk, httpGet, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { addDirLayer, busyboxLayout, editLayout, serviceImageLayouts } from '../../support/fixtures.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';

// Docker's voting sample app, run from its two compose files with every key
// as they have it: docker-compose.images.yml and docker-stack.yml (at
// dockersamples/example-voting-app 63e9150). Their images are on Docker Hub,
// which is out of reach here, so stand-ins of our own are pushed under the
// same names to a real local registry, reached as the Docker Hub mirror
// (--registry-mirror), as a runner with a pull-through cache reaches it.
// The stand-ins: redis and postgres laid out as Docker Hub's; vote pushes
// each vote into redis (busybox httpd and nc); worker pops them and logs
// them (it does not write them to postgres); result serves a page.

const IMAGES_FILE = `services:
  vote:
    image: dockersamples/examplevotingapp_vote
    depends_on:
      redis:
        condition: service_healthy
    ports:
      - "8080:80"
    networks:
      - front-tier
      - back-tier

  result:
    image: dockersamples/examplevotingapp_result
    depends_on:
      db:
        condition: service_healthy
    ports:
      - "8081:80"
    networks:
      - front-tier
      - back-tier

  worker:
    image: dockersamples/examplevotingapp_worker
    depends_on:
      redis:
        condition: service_healthy
      db:
        condition: service_healthy
    networks:
      - back-tier

  redis:
    image: redis:alpine
    volumes:
      - "./healthchecks:/healthchecks"
    healthcheck:
      test: /healthchecks/redis.sh
      interval: "5s"
    networks:
      - back-tier

  db:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: "postgres"
      POSTGRES_PASSWORD: "postgres"
    volumes:
      - "db-data:/var/lib/postgresql/data"
      - "./healthchecks:/healthchecks"
    healthcheck:
      test: /healthchecks/postgres.sh
      interval: "5s"
    networks:
      - back-tier

volumes:
  db-data:

networks:
  front-tier:
  back-tier:
`;

const STACK_FILE = `version: "3.9"

services:

  redis:
    image: redis:alpine
    networks:
      - frontend

  db:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: "postgres"
      POSTGRES_PASSWORD: "postgres"
    volumes:
      - db-data:/var/lib/postgresql/data
    networks:
      - backend

  vote:
    image: dockersamples/examplevotingapp_vote
    ports:
      - 8080:80
    networks:
      - frontend
    deploy:
      replicas: 2

  result:
    image: dockersamples/examplevotingapp_result
    ports:
      - 8081:80
    networks:
      - backend

  worker:
    image: dockersamples/examplevotingapp_worker
    networks:
      - frontend
      - backend
    deploy:
      replicas: 2

networks:
  frontend:
  backend:

volumes:
  db-data:
`;

// Our own healthchecks, written for the stand-ins: each asks its server over the guest's own address.
const REDIS_CHECK = `#!/bin/sh
host="$(hostname -i 2>/dev/null || echo 127.0.0.1)"
[ "$(redis-cli -h "$host" ping)" = PONG ]
`;
const POSTGRES_CHECK = `#!/bin/bash
host="$(hostname -i 2>/dev/null || echo 127.0.0.1)"
export PGPASSWORD="\${POSTGRES_PASSWORD:-}"
[ "$(psql -h "$host" -U "\${POSTGRES_USER:-postgres}" -qAt -c 'SELECT 1')" = 1 ]
`;

const VOTE_START = `#!/bin/sh
hostname > /www/index.html
exec httpd -f -p 80 -h /www
`;
// GET /cgi-bin/vote?vote=a: RPUSH the vote onto redis's "votes" list (redis closes on QUIT).
const VOTE_CGI = `#!/bin/sh
vote=\${QUERY_STRING#vote=}
reply=$(printf 'RPUSH votes %s\\r\\nQUIT\\r\\n' "$vote" | nc redis 6379 | head -n 1 | tr -d '\\r')
printf 'Content-Type: text/plain\\r\\n\\r\\n%s queued vote %s (%s)\\n' "$(hostname)" "$vote" "$reply"
`;
const WORKER_START = `#!/bin/sh
echo "worker $(hostname) waiting for votes"
while :; do
  vote=$(printf 'LPOP votes\\r\\nQUIT\\r\\n' | nc redis 6379 | sed -n 2p | tr -d '\\r')
  case "$vote" in
    '' | +OK) sleep 1 ;;
    *) echo "$(hostname) processed vote $vote" ;;
  esac
done
`;
const RESULT_START = `#!/bin/sh
echo "results from $(hostname)" > /www/index.html
exec httpd -f -p 80 -h /www
`;

let stateDir: string;
let work: string;
let registry: TestRegistry;
const restoreEnv = snapshotEnv();

/** A busybox stand-in: `files` (path: [content, mode]) added as a layer, `start` as its command. */
async function standIn(
  name: string,
  files: Record<string, [string, number]>,
  exposes: boolean,
): Promise<string> {
  const layout = path.join(work, 'layouts', name);
  await cp(await busyboxLayout(), layout, { recursive: true });
  const root = path.join(work, 'roots', name);
  for (const [file, [content, mode]] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await writeFile(path.join(root, file), content);
    await chmod(path.join(root, file), mode);
  }
  await addDirLayer(layout, root, ['--owner=0', '--group=0']);
  await editLayout(layout, {
    config: (config) => {
      const run = config.config as Record<string, unknown>;
      run.Entrypoint = null;
      run.Cmd = ['/app/start.sh'];
      run.WorkingDir = '/app';
      if (!exposes) delete run.ExposedPorts;
    },
  });
  return layout;
}

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-it-');
  work = await mkdtemp('/tmp/hyper-voting-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  registry = await startRegistry();
  const official = await serviceImageLayouts();
  const images: [string, string, string][] = [
    [official.redisOfficial, 'library/redis', 'alpine'],
    [official.postgresOfficial, 'library/postgres', '15-alpine'],
    [
      await standIn(
        'vote',
        { 'app/start.sh': [VOTE_START, 0o755], 'www/cgi-bin/vote': [VOTE_CGI, 0o755] },
        true,
      ),
      'dockersamples/examplevotingapp_vote',
      'latest',
    ],
    [
      await standIn('result', { 'app/start.sh': [RESULT_START, 0o755] }, true),
      'dockersamples/examplevotingapp_result',
      'latest',
    ],
    [
      await standIn('worker', { 'app/start.sh': [WORKER_START, 0o755] }, false),
      'dockersamples/examplevotingapp_worker',
      'latest',
    ],
  ];
  for (const [layout, repository, tag] of images) await pushLayout(registry, layout, repository, tag);
  await mkdir(path.join(work, 'healthchecks'));
  await writeFile(path.join(work, 'healthchecks', 'redis.sh'), REDIS_CHECK, { mode: 0o755 });
  await writeFile(path.join(work, 'healthchecks', 'postgres.sh'), POSTGRES_CHECK, { mode: 0o755 });
  await writeFile(path.join(work, 'docker-compose.images.yml'), IMAGES_FILE);
  await writeFile(path.join(work, 'docker-stack.yml'), STACK_FILE);
}, 600_000);

afterAll(async () => {
  await hyper('down', '--time', '0');
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await registry?.stop();
  await rm(stateDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
  restoreEnv();
});

/** `hyper config` then `hyper up` of one of the files, through the mirror; returns up's stderr. */
async function upFile(file: string): Promise<string> {
  const compose = path.join(work, file);
  const config = await hyperOk('config', '-f', compose);
  expect(config.stdout).toContain('order:');
  const mirror = ['--registry-mirror', registry.host];
  const up = await hyperOk('up', '-f', compose, ...mirror, '--volume-size', '256M');
  return up.stderr;
}

test('docker-compose.images.yml: the five services come up in order, and a vote goes through redis to the worker', async () => {
  const log = await upFile('docker-compose.images.yml');
  // Every key of the file is honoured: no warning line.
  expect(log.split('\n').filter((line) => line.startsWith('warning:'))).toEqual([]);
  expect(log).toContain('redis: healthy after');
  expect(log).toContain('db: healthy after');
  const names = JSON.parse((await hyperOk('ps', '--json')).stdout).map(
    (row: { name: string; state: string }) => [row.name, row.state],
  );
  expect(names.sort()).toEqual([
    ['db', 'running'],
    ['redis', 'running'],
    ['result', 'running'],
    ['vote', 'running'],
    ['worker', 'running'],
  ]);
  expect((await httpGet('http://127.0.0.1:8080/')).trim()).toBe('vote');
  expect((await httpGet('http://127.0.0.1:8081/')).trim()).toBe('results from result');
  expect(await httpGet('http://127.0.0.1:8080/cgi-bin/vote?vote=b')).toBe('vote queued vote b (:1)\n');
  const deadline = Date.now() + 60_000;
  while (!(await hyperOk('logs', 'worker')).stdout.includes('worker processed vote b')) {
    if (Date.now() > deadline)
      throw new Error(`the worker did not take the vote:\n${(await hyper('logs', 'worker')).stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const down = await hyperOk('down', '-f', path.join(work, 'docker-compose.images.yml'), '--time', '0');
  expect(down.stderr).toContain('vote: stopped');
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
});

test('docker-stack.yml: two vote replicas behind port 8080 and two workers, with version warned about', async () => {
  const log = await upFile('docker-stack.yml');
  expect(log.split('\n').filter((line) => line.startsWith('warning:'))).toEqual([
    `warning: ${path.join(work, 'docker-stack.yml')}: version (line 1): ignored: it is obsolete in the Compose Specification`,
  ]);
  const rows = JSON.parse((await hyperOk('ps', '--json')).stdout) as { name: string; state: string }[];
  expect(rows.map((row) => [row.name, row.state]).sort()).toEqual([
    ['db', 'running'],
    ['redis', 'running'],
    ['result', 'running'],
    ['vote.1', 'running'],
    ['vote.2', 'running'],
    ['worker.1', 'running'],
    ['worker.2', 'running'],
  ]);
  const pages = new Set<string>();
  for (let i = 0; i < 10; i++) pages.add((await httpGet('http://127.0.0.1:8080/')).trim());
  expect([...pages].sort()).toEqual(['vote.1', 'vote.2']);
  // Votes through either replica reach redis, and the two workers share them.
  for (const vote of ['a', 'b', 'a', 'b'])
    expect(await httpGet(`http://127.0.0.1:8080/cgi-bin/vote?vote=${vote}`)).toMatch(
      /^vote\.[12] queued vote [ab] \(:\d+\)\n$/,
    );
  const deadline = Date.now() + 60_000;
  const processed = async (): Promise<number> => {
    let count = 0;
    for (const worker of ['worker.1', 'worker.2'])
      count += (await hyperOk('logs', worker)).stdout.match(/processed vote [ab]/g)?.length ?? 0;
    return count;
  };
  while ((await processed()) < 4) {
    if (Date.now() > deadline) throw new Error(`the workers took ${await processed()} of 4 votes`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await hyperOk('down', '-f', path.join(work, 'docker-stack.yml'), '--time', '0');
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
});
