/**
 * Snapshot benchmark: the Debian-built postgres image from a local registry,
 * 256 MiB of RAM, a named volume holding a ~100 MB database. Medians over N
 * runs of:
 *   volume snapshot (freeze, one QMP transaction, thaw) and its restore
 *   (stop, revert, boot, answering);
 *   checkpoint (the VM migrated into a capture machine with file-backed RAM)
 *   and its restore in place (a new QEMU mapping that RAM file, answering);
 *   boot from checkpoint (a stopped VM resumed from it, to answering) against
 *   a normal boot of the same stopped VM to answering, and against a cold
 *   boot (a new VM on an empty volume: initdb, to answering), in the same run;
 *   hyper export of the checkpoint, hyper import of it into another state
 *   dir, and the imported VM resumed to answering (what the action's
 *   checkpoint-key does on a later run, less the cache transfer).
 *
 * Usage: bench/run-ts snapshot [--runs N] [--mb SIZE]   (defaults 5, 100). Prints figures; asserts nothing.
 */
import { execa } from 'execa';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatRuns, machineLine, median } from './stats.js';
import { hyper, hyperOk } from '../test/support/cli.js';
import { psql as psqlOnce } from '../test/support/postgres.js';
import { serviceImageLayouts } from '../test/support/fixtures.js';
import { pushLayout } from '../test/support/registry/push-layout.js';
import { startRegistry } from '../test/support/registry/registry.js';

// Loading the benchmark's data takes minutes under TCG.
const psql = (port: string, sql: string): Promise<string> => psqlOnce(port, sql, 600_000);

async function answering(port: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await execa('psql', ['-h', '127.0.0.1', '-p', port, '-U', 'postgres', '-tAc', 'select 1'], {
        timeout: 5000,
      });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`postgres on ${port} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: number) => {
    const at = args.indexOf(name);
    return at === -1 ? fallback : Number(args[at + 1]);
  };
  const runs = option('--runs', 5);
  const mb = option('--mb', 100);
  process.env.HYPER_ACCEL = process.env.HYPER_ACCEL ?? 'tcg';
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-snap-'));
  process.env.HYPER_STATE_DIR = stateDir;
  const registry = await startRegistry({ auth: 'anonymous' });
  const figures = {
    volumeSnapshot: [] as number[],
    volumeRestore: [] as number[],
    checkpoint: [] as number[],
    checkpointRestore: [] as number[],
    bootFromCheckpoint: [] as number[],
    normalBoot: [] as number[],
    coldBoot: [] as number[],
    exportTime: [] as number[],
    exportMiB: [] as number[],
    importTime: [] as number[],
    importedBoot: [] as number[],
  };
  const otherState = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-snap-import-'));
  const files = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-snap-files-'));
  try {
    const image = await pushLayout(registry, (await serviceImageLayouts()).postgres, 'bench/postgres', '15');
    await hyperOk(
      'run',
      '--name',
      'db',
      '-m',
      '256',
      '-p',
      '5432',
      '-v',
      'pgdata:/var/lib/postgresql/data',
      image,
    );
    const ps = JSON.parse((await hyperOk('ps', '--json')).stdout) as { ports: { hostPort: number }[] }[];
    const port = String(ps[0]?.ports[0]?.hostPort);
    await answering(port);
    // ~100 rows of ~1 KiB per 100 KiB: `mb` MB of table data.
    await psql(
      port,
      `create table filler as select g as id, repeat('x', 1000) as pad from generate_series(1, ${mb * 1000}) g`,
    );
    const size = await psql(port, "select pg_size_pretty(pg_database_size('postgres'))");
    console.error(`database size ${size}`);
    for (let i = 0; i < runs; i++) {
      figures.volumeSnapshot.push(await timed(() => hyperOk('snapshot', 'db', `v${i}`)));
      figures.volumeRestore.push(
        await timed(async () => {
          await hyperOk('restore', 'db', `v${i}`);
          await answering(port);
        }),
      );
      figures.checkpoint.push(await timed(() => hyperOk('snapshot', '--checkpoint', 'db', `c${i}`)));
      figures.checkpointRestore.push(
        await timed(async () => {
          await hyperOk('restore', 'db', `c${i}`);
          await answering(port);
        }),
      );
      await hyperOk('stop', 'db');
      figures.bootFromCheckpoint.push(
        await timed(async () => {
          await hyperOk('restore', 'db', `c${i}`);
          await answering(port);
        }),
      );
      await hyperOk('stop', 'db');
      figures.normalBoot.push(
        await timed(async () => {
          await hyperOk('start', 'db');
          await answering(port);
        }),
      );
      figures.coldBoot.push(
        await timed(async () => {
          await hyperOk(
            'run',
            '--name',
            'cold',
            '-m',
            '256',
            '-p',
            '5432',
            '-v',
            `cold${i}:/var/lib/postgresql/data`,
            image,
          );
          const coldPs = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
            name: string;
            ports: { hostPort: number }[];
          }[];
          await answering(String(coldPs.find((p) => p.name === 'cold')?.ports[0]?.hostPort));
        }),
      );
      await hyperOk('rm', '-f', 'cold');
      await hyperOk('volume', 'rm', `cold${i}`);
      const file = path.join(files, `db-${i}.tar`);
      figures.exportTime.push(await timed(() => hyperOk('export', 'db', `c${i}`, file)));
      figures.exportMiB.push((await stat(file)).size / 1024 / 1024);
      process.env.HYPER_STATE_DIR = otherState;
      try {
        figures.importTime.push(await timed(() => hyperOk('import', file)));
        const imported = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
          ports: { hostPort: number }[];
        }[];
        figures.importedBoot.push(
          await timed(async () => {
            await hyperOk('restore', 'db', `c${i}`);
            await answering(String(imported[0]?.ports[0]?.hostPort));
          }),
        );
        await hyperOk('rm', '-f', 'db');
        await hyperOk('volume', 'rm', 'pgdata');
      } finally {
        process.env.HYPER_STATE_DIR = stateDir;
        await rm(file, { force: true });
      }
      // Keep the disks from growing run over run.
      await hyperOk('snapshot', 'rm', 'db', `v${i}`);
      await hyperOk('snapshot', 'rm', 'db', `c${i}`);
      console.error(`run ${i + 1}/${runs} done`);
    }
    const fmt = formatRuns;
    console.log(`Snapshot benchmark: bench/run-ts snapshot, ${runs} runs, ${new Date().toISOString()}`);
    console.log(`Machine: ${machineLine()}, accel ${process.env.HYPER_ACCEL}`);
    console.log(
      `postgres, 256 MiB RAM, database ${size} on a named volume; each time is the in-process CLI call, plus, for restores and boots, until psql answers`,
    );
    console.log(`volume snapshot:                         ${fmt(figures.volumeSnapshot)}`);
    console.log(`volume restore (stop, revert, boot, answering): ${fmt(figures.volumeRestore)}`);
    console.log(`checkpoint:                              ${fmt(figures.checkpoint)}`);
    console.log(`checkpoint restore in place, answering:  ${fmt(figures.checkpointRestore)}`);
    console.log(`boot from checkpoint (stopped VM), answering: ${fmt(figures.bootFromCheckpoint)}`);
    console.log(`normal boot (stopped VM), answering:     ${fmt(figures.normalBoot)}`);
    console.log(`cold boot (new VM, empty volume, initdb), answering: ${fmt(figures.coldBoot)}`);
    console.log(
      `ratio normal boot / boot from checkpoint: ${(median(figures.normalBoot) / median(figures.bootFromCheckpoint)).toFixed(1)}x`,
    );
    console.log(
      `ratio cold boot / boot from checkpoint:   ${(median(figures.coldBoot) / median(figures.bootFromCheckpoint)).toFixed(1)}x`,
    );
    console.log(
      `export of the checkpoint:                ${fmt(figures.exportTime)}, ${median(figures.exportMiB).toFixed(0)} MiB`,
    );
    console.log(`import into another state dir:           ${fmt(figures.importTime)}`);
    console.log(`imported checkpoint resumed, answering:  ${fmt(figures.importedBoot)}`);
  } finally {
    for (const dir of [otherState, stateDir]) {
      process.env.HYPER_STATE_DIR = dir;
      for (const name of await readdir(path.join(dir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
    }
    await registry.stop();
    for (const dir of [stateDir, otherState, files]) await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
