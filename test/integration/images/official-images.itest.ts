import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { serviceImageLayouts } from '../../support/fixtures.js';
import { until } from '../../support/postgres.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';
import { expectNothingLeft } from '../../support/runner-expect.js';

// Images laid out like Docker Hub's official postgres and redis (an entrypoint
// that starts as root and steps down with gosu, uid 999, a VOLUME, no
// healthcheck), from a real registry, through `hyper run` and the action.
// They need what Docker gives a container: /dev/fd (the postgres entrypoint
// hands initdb its password through bash's <(...)), 1048576 open files (redis
// sizes maxclients by it), umask 0022, and a minimal /dev with a 64 MiB shm.
let registry: TestRegistry;
let stateDir: string;
let work: string;
let postgres: string;
let redis: string;
const restoreEnv = snapshotEnv();

const LOGIN = { user: 'app', password: 'pg secret 42', database: 'appdb' };
const POSTGRES_ENV = [
  `POSTGRES_PASSWORD=${LOGIN.password}`,
  `POSTGRES_USER=${LOGIN.user}`,
  `POSTGRES_DB=${LOGIN.database}`,
];

beforeAll(async () => {
  process.env.HYPER_ACCEL = 'tcg';
  const layouts = await serviceImageLayouts();
  registry = await startRegistry({ auth: 'anonymous' });
  postgres = await pushLayout(registry, layouts.postgresOfficial, 'library/postgres', '15');
  redis = await pushLayout(registry, layouts.redisOfficial, 'library/redis', '7');
  stateDir = await mkdtemp('/tmp/hyper-official-');
  work = await mkdtemp('/tmp/hyper-official-work-');
  process.env.HYPER_STATE_DIR = stateDir;
  // One init script of each kind the entrypoint runs, in name order.
  const initdb = path.join(work, 'initdb');
  await mkdir(initdb);
  await writeFile(path.join(initdb, '01-schema.sql'), 'create table seen (what text primary key);\n');
  await writeFile(
    path.join(initdb, '02-seed.sh'),
    'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -c "insert into seen values (\'sh\')"\n',
  );
  await writeFile(path.join(initdb, '03-more.sql.gz'), gzipSync("insert into seen values ('sql.gz');\n"));
});

afterAll(async () => {
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await registry?.stop();
  await rm(stateDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
  restoreEnv();
});

/** One SQL statement from the host, logged in with the password as POSTGRES_USER to POSTGRES_DB. */
async function psqlWithPassword(port: string, sql: string, password = LOGIN.password): Promise<string> {
  const result = await execa(
    'psql',
    ['-h', '127.0.0.1', '-p', port, '-U', LOGIN.user, '-d', LOGIN.database, '-tAc', sql],
    { env: { PGPASSWORD: password }, timeout: 60_000 },
  );
  return result.stdout.trim();
}

async function redisCli(port: string, ...command: string[]): Promise<string> {
  return (await execa('redis-cli', ['-h', '127.0.0.1', '-p', port, ...command], { timeout: 30_000 })).stdout;
}

async function hostPort(name: string): Promise<string> {
  const ps = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
    name: string;
    ports: { hostPort: number }[];
  }[];
  return String(ps.find((p) => p.name === name)?.ports[0]?.hostPort);
}

/** A shell command's trimmed stdout, run in the service as `docker exec` would. */
async function sh(name: string, script: string, ...options: string[]): Promise<string> {
  return (await hyperOk('exec', ...options, name, '--', 'sh', '-c', script)).stdout.trim();
}

describe('through hyper run', () => {
  let dbPort: string;
  let cachePort: string;

  beforeAll(async () => {
    const env = POSTGRES_ENV.flatMap((entry) => ['-e', entry]);
    await hyperOk(
      'run',
      '--name',
      'db',
      '-p',
      '5432',
      ...env,
      '-v',
      `${work}/initdb:/docker-entrypoint-initdb.d`,
      postgres,
    );
    // A tmpfs of the user's own on /dev/shm goes over the default one.
    await hyperOk('run', '--name', 'cache', '-p', '6379', '--tmpfs', '/dev/shm:size=128m', redis);
    dbPort = await hostPort('db');
    cachePort = await hostPort('cache');
    await until('db answering with the password', () => psqlWithPassword(dbPort, 'select 1'));
    await until('cache answering', async () => expect(await redisCli(cachePort, 'ping')).toBe('PONG'));
  });

  afterAll(async () => {
    await hyper('rm', '-f', 'db', 'cache');
  });

  test('postgres made POSTGRES_USER with POSTGRES_PASSWORD and POSTGRES_DB, and ran every init script', async () => {
    expect(await psqlWithPassword(dbPort, "select string_agg(what, ',' order by what) from seen")).toBe(
      'sh,sql.gz',
    );
    expect(await psqlWithPassword(dbPort, 'select current_user, current_database()')).toBe(
      `${LOGIN.user}|${LOGIN.database}`,
    );
    // The password is checked (scram), not trusted.
    await expect(psqlWithPassword(dbPort, 'select 1', 'wrong')).rejects.toThrow(
      /password authentication failed for user "app"/,
    );
    const log = await serviceLog('db');
    expect(log).toContain('PostgreSQL init process complete; ready for start up.');
    expect(log).not.toContain('/dev/fd');
  });

  test('redis keeps its 10000 clients: the open-file limit is not cut', async () => {
    expect(await redisCli(cachePort, 'config', 'get', 'maxclients')).toBe('maxclients\n10000');
    expect(await serviceLog('cache')).not.toMatch(/reduced/);
  });

  test('the services run as uid 999 with 1048576 open files; redis tightened the umask 0022 it was given', async () => {
    // (postgres sets its own umask, 0077.)
    const postmaster = await sh('db', 'head -n1 "$PGDATA/postmaster.pid"');
    const pgStatus = await sh('db', `cat /proc/${postmaster}/status /proc/${postmaster}/limits`);
    expect(pgStatus).toMatch(/^Uid:\s+999\s+999\s+999\s+999$/m);
    expect(pgStatus).toMatch(/^Max open files\s+1048576\s+1048576\s+files/m);
    const redisStatus = await sh('cache', 'p=$(pidof redis-server); cat /proc/$p/status /proc/$p/limits');
    expect(redisStatus).toMatch(/^Uid:\s+999\s+999\s+999\s+999$/m);
    // The entrypoint sets 0077 only when it finds Docker's 0022.
    expect(redisStatus).toMatch(/^Umask:\s+0077$/m);
    expect(redisStatus).toMatch(/^Max open files\s+1048576\s+1048576\s+files/m);
    expect(await sh('cache', 'stat -c "%u:%g %a" /data')).toBe('999:999 755');
  });

  test('/dev is the container set Docker makes, not the VM devices', async () => {
    // What `docker run debian ls -A /dev` lists.
    expect((await sh('db', 'ls -A /dev')).split('\n')).toEqual([
      'core',
      'fd',
      'full',
      'mqueue',
      'null',
      'ptmx',
      'pts',
      'random',
      'shm',
      'stderr',
      'stdin',
      'stdout',
      'tty',
      'urandom',
      'zero',
    ]);
    const nodes = await sh(
      'db',
      'stat -c "%n %F %a %t:%T" /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty',
    );
    expect(nodes.split('\n')).toEqual([
      '/dev/null character special file 666 1:3',
      '/dev/zero character special file 666 1:5',
      '/dev/full character special file 666 1:7',
      '/dev/random character special file 666 1:8',
      '/dev/urandom character special file 666 1:9',
      '/dev/tty character special file 666 5:0',
    ]);
    expect(await sh('db', 'for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done')).toBe(
      '/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx',
    );
    const mounts = await sh('db', 'grep " /dev" /proc/mounts');
    expect(mounts).toMatch(/^tmpfs \/dev tmpfs rw,nosuid,size=65536k,mode=755/m);
    expect(mounts).toMatch(/^devpts \/dev\/pts devpts rw,nosuid,noexec,.*gid=5,mode=620,ptmxmode=666/m);
    expect(mounts).toMatch(/^shm \/dev\/shm tmpfs rw,nosuid,nodev,noexec,.*size=65536k/m);
    expect(mounts).toMatch(/^mqueue \/dev\/mqueue mqueue rw,nosuid,nodev,noexec/m);
    expect(await sh('db', 'df -k /dev/shm | tail -n1')).toMatch(/^shm\s+65536\s/);
    expect(await sh('cache', 'df -k /dev/shm | tail -n1')).toMatch(/^tmpfs\s+131072\s/);
    // What the postgres entrypoint relies on, and the shell's own links.
    expect(await sh('db', "bash -c 'cat <(echo substituted)'")).toBe('substituted');
    const streams = await hyperOk(
      'exec',
      'db',
      '--',
      'sh',
      '-c',
      'echo out > /dev/stdout; echo err > /dev/stderr',
    );
    expect([streams.stdout, streams.stderr]).toEqual(['out\n', 'err\n']);
  });

  test('exec gets the limits, umask, hostname, hosts and HOME a docker exec gets', async () => {
    expect(await sh('db', 'ulimit -n; ulimit -Hn; umask')).toBe('1048576\n1048576\n0022');
    expect(await sh('db', 'hostname; cat /etc/hostname')).toBe('db\ndb');
    expect(await sh('db', 'cat /etc/hosts')).toMatch(/^\S+\tdb\b/m);
    expect(await sh('db', 'id -u; echo "$HOME"')).toBe('0\n/root');
    expect(await sh('db', 'id -u; echo "$HOME"; ulimit -n', '-u', 'postgres')).toBe(
      '999\n/var/lib/postgresql\n1048576',
    );
  });

  test('a graceful stop of a service with its own tmpfs on /dev/shm exits 0', async () => {
    const stop = await hyperOk('stop', 'cache');
    expect(stop.stderr).toContain('cache: exited with code 0');
    expect(await serviceLog('cache')).toMatch(/Redis is now ready to exit, bye bye/);
  });
});

describe('through the action', () => {
  test('a services input with the official-style env and an init-scripts volume; host clients reach both', async () => {
    const job = await RunnerJob.create();
    try {
      const services = `
db:
  image: ${postgres}
  env:
    POSTGRES_PASSWORD: ${LOGIN.password}
    POSTGRES_USER: ${LOGIN.user}
    POSTGRES_DB: ${LOGIN.database}
  ports: ['5432']
  volumes: ['${work}/initdb:/docker-entrypoint-initdb.d']
cache:
  image: ${redis}
  ports: ['6379']
`;
      const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '180' });
      expect(main.stdout).not.toContain('::error::');
      expect(main.exitCode).toBe(0);
      const env = await job.env();
      const dbPort = env.HYPER_DB_PORT_5432 as string;
      // Without a healthcheck, "started" means listening, as with Docker: the
      // entrypoint's setup server listens on its socket only, so this is the
      // real server, which may still be starting up ("FATAL: the database
      // system is starting up") until it answers.
      expect(
        await until('db answering', () => psqlWithPassword(dbPort, 'select count(*) from seen'), 60_000),
      ).toBe('2');
      const cachePort = env.HYPER_CACHE_PORT_6379 as string;
      expect(await redisCli(cachePort, 'ping')).toBe('PONG');
      expect(await redisCli(cachePort, 'config', 'get', 'maxclients')).toBe('maxclients\n10000');

      const post = await job.step(POST, {});
      expect(post.exitCode).toBe(0);
      expect(post.stdout).not.toContain('::warning::');
      await expectNothingLeft(job);
    } finally {
      await job.remove();
    }
  });

  test('postgres without POSTGRES_PASSWORD fails the step with the service, its exit code and its message', async () => {
    const job = await RunnerJob.create();
    try {
      const services = `
db:
  image: ${postgres}
  ports: ['5432']
`;
      const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '180' });
      expect(main.exitCode).toBe(1);
      expect(main.stdout).toMatch(/^::error::.*service db: db exited with code 1 before it was healthy/m);
      const logGroup = main.stdout.slice(main.stdout.indexOf('::group::Log of db'));
      expect(logGroup).toContain('Error: Database is uninitialized and superuser password is not specified.');
      expect(logGroup).toContain('POSTGRES_PASSWORD');

      const post = await job.step(POST, {});
      expect(post.exitCode).toBe(0);
      await expectNothingLeft(job);
    } finally {
      await job.remove();
    }
  });
});

/** The service's log, both streams (postgres writes its log to stderr), as `hyper logs` prints them. */
async function serviceLog(name: string): Promise<string> {
  const result = await hyperOk('logs', name);
  return result.stdout + result.stderr;
}
