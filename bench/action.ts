/**
 * Action benchmark: dist/main then dist/post, run as the Actions runner runs
 * them, with the Debian-built redis and postgres images served by a local
 * registry. Medians over N runs of:
 *   cold: main with an empty image cache (pull, verify, unpack, mkfs, boot, health);
 *   warm: main with the images, root filesystems and templates cached (the
 *     services resume from their service templates, kept by the fill run);
 *   warm, templates off: the same cache, every VM booted in full (the
 *     baseline for templates, in the same run);
 *   restored: main on an empty image cache with the `cache` input restoring
 *     blobs, root filesystems and service templates from the Actions cache (a
 *     local fake of the service, test/support/actions-cache.ts, since the real
 *     one is GitHub's): a later workflow run on a fresh hosted runner;
 *   first healthy: from main's start to the first "healthy" line it prints;
 *   teardown: the post step.
 * Baseline, in the same run: redis-server and postgres started as plain host
 * processes (no VM) until they answer; the no-isolation floor.
 *
 * Usage: bench/run-ts action [--runs N]   (default 3). Prints figures; asserts nothing.
 */
import { execa } from 'execa';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatRuns, machineLine, median } from './stats.js';
import { startFakeActionsCache } from '../test/support/actions-cache.js';
import { serviceImageLayouts } from '../test/support/fixtures.js';
import { pushLayout } from '../test/support/registry/push-layout.js';
import { startRegistry } from '../test/support/registry/registry.js';
import { MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../test/support/runner.js';

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} did not answer within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** redis-server and postgres as host processes, until each answers; returns ms. */
async function hostBaseline(): Promise<number | undefined> {
  const pgBin = (
    await execa('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin | head -n1'], { reject: false })
  ).stdout.trim();
  const haveRedis = (await execa('sh', ['-c', 'command -v redis-server'], { reject: false })).exitCode === 0;
  if (!pgBin || !haveRedis) return undefined;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-baseline-'));
  await execa('chown', ['nobody', dir]);
  const asNobody = (cmd: string[]) => ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...cmd];
  const start = performance.now();
  const redis = execa('redis-server', ['--port', '16399', '--bind', '127.0.0.1', '--save', ''], {
    reject: false,
  });
  const [first, ...rest] = asNobody([
    `${pgBin}/initdb`,
    '-D',
    `${dir}/data`,
    '-U',
    'postgres',
    '--auth=trust',
    '--no-sync',
  ]);
  await execa(first as string, rest);
  const [pgFirst, ...pgRest] = asNobody([
    `${pgBin}/postgres`,
    '-D',
    `${dir}/data`,
    '-p',
    '15499',
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
  ]);
  const pg = execa(pgFirst as string, pgRest, { reject: false });
  try {
    await until(
      'host redis',
      async () => (await execa('redis-cli', ['-p', '16399', 'ping'])).stdout === 'PONG',
    );
    await until(
      'host postgres',
      async () =>
        (await execa('psql', ['-h', '127.0.0.1', '-p', '15499', '-U', 'postgres', '-tAc', 'select 1']))
          .stdout === '1',
    );
    return performance.now() - start;
  } finally {
    redis.kill('SIGTERM');
    pg.kill('SIGINT');
    await Promise.allSettled([redis, pg]);
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const runs = args[0] === '--runs' ? Number(args[1]) : 3;
  if (!Number.isInteger(runs) || runs < 1) throw new Error('usage: bench/run-ts action [--runs N]');
  const layouts = await serviceImageLayouts();
  const registry = await startRegistry({ auth: 'anonymous' });
  const services =
    `redis:\n  image: ${await pushLayout(registry, layouts.redis, 'bench/redis', '7')}\n  ports: ['6379']\n` +
    `db:\n  image: ${await pushLayout(registry, layouts.postgres, 'bench/postgres', '15')}\n  ports: ['5432']\n`;
  const figures = {
    cold: [] as number[],
    warm: [] as number[],
    warmOff: [] as number[],
    restored: [] as number[],
    restoreStep: [] as number[],
    save: [] as number[],
    firstHealthy: [] as number[],
    teardown: [] as number[],
    host: [] as number[],
  };
  const sharedCache = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-cache-'));
  const actionsCache = await startFakeActionsCache();
  // A runner's temp dir is the same path in every job: @actions/cache versions entries by path.
  const runnerTemp = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-runner-temp-'));
  // The guest bundle is a tool, not an image: every run shares the usual one, so cold measures images.
  const toolCache = path.join(
    process.env.HYPER_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'hyper'),
    'toolcache',
  );
  try {
    for (let i = 0; i < runs; i++) {
      for (const kind of ['cold', 'warm', 'warmOff', 'restored'] as const) {
        const shared = kind === 'warm' || kind === 'warmOff';
        const cache = shared ? sharedCache : await mkdtemp(path.join(os.tmpdir(), `hyper-bench-${kind}-`));
        const env = { HYPER_CACHE_DIR: cache, RUNNER_TOOL_CACHE: toolCache };
        const inputs = {
          services,
          accel: 'tcg',
          'wait-timeout': '300',
          cache: 'false',
          templates: kind === 'warmOff' ? 'off' : 'auto',
        };
        if (kind === 'restored') {
          Object.assign(env, actionsCache.env, { RUNNER_TEMP: runnerTemp });
          inputs.cache = 'true';
        }
        if ((kind === 'warm' || kind === 'restored') && i === 0) {
          // Fill the warm cache, or the Actions cache, once, outside the main figures.
          const fill = await RunnerJob.create();
          await fill.step(MAIN, inputs, env);
          const post = await fill.step(POST, {}, env);
          const saved = /Image cache: saved .* in (\d+) ms/.exec(post.stdout);
          if (kind === 'restored') {
            if (!saved) throw new Error(`the Actions cache was not filled:\n${post.stdout}`);
            figures.save.push(Number(saved[1]));
            await rm(cache, { recursive: true, force: true });
            await mkdir(cache);
          }
          await fill.remove();
        }
        const job = await RunnerJob.create();
        const start = performance.now();
        const mainStep = await job.step(MAIN, inputs, env);
        const mainMs = performance.now() - start;
        if (mainStep.exitCode !== 0) throw new Error(`main failed:\n${mainStep.stdout}`);
        const healthy = [...mainStep.stdout.matchAll(/: healthy after (\d+) ms/g)].map((m) => Number(m[1]));
        if (kind === 'restored') {
          const restored = /Image cache: restored .* in (\d+) ms/.exec(mainStep.stdout);
          if (!restored) throw new Error(`nothing was restored:\n${mainStep.stdout}`);
          figures.restoreStep.push(Number(restored[1]));
        }
        const postStart = performance.now();
        await job.step(POST, {}, env);
        figures.teardown.push(performance.now() - postStart);
        figures[kind].push(mainMs);
        if (kind === 'warm') figures.firstHealthy.push(Math.min(...healthy));
        await job.remove();
        if (!shared) await rm(cache, { recursive: true, force: true });
      }
      const host = await hostBaseline();
      if (host !== undefined) figures.host.push(host);
      console.error(`run ${i + 1}/${runs} done`);
    }
  } finally {
    await registry.stop();
    await actionsCache.stop();
    await rm(sharedCache, { recursive: true, force: true });
    await rm(runnerTemp, { recursive: true, force: true });
  }
  const fmt = formatRuns;
  console.log(`Action benchmark: bench/run-ts action, ${runs} runs, ${new Date().toISOString()}`);
  console.log(`Machine: ${machineLine()}, accel tcg`);
  console.log(`main, cold (empty image cache): ${fmt(figures.cold)}`);
  console.log(`main, warm (images and service templates cached): ${fmt(figures.warm)}`);
  console.log(`main, warm, templates off (every VM booted in full): ${fmt(figures.warmOff)}`);
  console.log(
    `ratio warm templates off / warm: ${(median(figures.warmOff) / median(figures.warm)).toFixed(1)}x`,
  );
  console.log(
    `main, restored from the Actions cache (empty image cache; images and service templates restored): ${fmt(figures.restored)}`,
  );
  console.log(
    `  of which the cache restore: ${fmt(figures.restoreStep)}; the save in post, once: ${fmt(figures.save)}`,
  );
  console.log(`first healthy (warm, boot to healthy of the first service): ${fmt(figures.firstHealthy)}`);
  console.log(`post (teardown):                ${fmt(figures.teardown)}`);
  if (figures.host.length) {
    console.log(`host processes (no VM), start to both answering: ${fmt(figures.host)}`);
    console.log(
      `ratio warm main / host: ${(median(figures.warm) / median(figures.host)).toFixed(1)}x; restored / host: ${(median(figures.restored) / median(figures.host)).toFixed(1)}x; cold / host: ${(median(figures.cold) / median(figures.host)).toFixed(1)}x`,
    );
  } else {
    console.log('host baseline skipped: install redis-server and postgresql on the host for it');
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
