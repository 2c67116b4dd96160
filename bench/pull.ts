/**
 * Pull benchmark: an image of about 100 MB (uncompressed) made from Debian packages, served by a
 * local registry on 127.0.0.1, pulled and turned into an ext4 base. Medians over N runs of:
 *   cold:  resolveImage + ensureRootfs into an empty cache dir (download, verify, unpack, mkfs);
 *   warm:  the same with everything cached: the time to a usable base;
 *   unpack + mkfs: ensureRootfs alone, blobs already stored, no base yet (and applyLayers alone);
 *   baseline: GNU tar extracting the same blobs, then the same mkfs.ext4.
 *
 * Usage: bench/run-ts pull [--runs N]   (default 5). Prints figures; asserts nothing.
 */
import { median } from './stats.js';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import type { LocalImage } from '../src/images/image.js';
import { applyLayers } from '../src/images/layers.js';
import { resolveImage } from '../src/images/resolve.js';
import { ensureRootfs, rootfsSizeMiB } from '../src/images/rootfs.js';
import { run } from '../src/process/run.js';
import { debianBulkImage } from '../test/support/images/debian-fixture.js';
import { pushImage } from '../test/support/registry/push.js';
import { startRegistry, type TestRegistry } from '../test/support/registry/registry.js';

const MB = 1_000_000;

interface Figures {
  coldMs: number[];
  coldPullMs: number[];
  warmMs: number[];
  unpackMs: number[];
  applyMs: number[];
  baselineMs: number[];
}

/** The signal that asked the bench to stop: it does, between two steps, and cleans up. */
let interrupted: NodeJS.Signals | undefined;

class UsageError extends Error {
  override name = 'UsageError';
}

class Interrupted extends Error {
  override name = 'Interrupted';
}

function parseRuns(args: readonly string[]): number {
  if (args.length === 0) return 5;
  const [flag, value] = args;
  const runs = Number(value);
  if (flag !== '--runs' || args.length !== 2 || !Number.isInteger(runs) || runs < 1) {
    throw new UsageError(
      `bench pull: ${JSON.stringify(args.join(' '))} is not valid; use "--runs N" with N ≥ 1`,
    );
  }
  return runs;
}

async function main(): Promise<void> {
  const runs = parseRuns(process.argv.slice(2));
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = signal;
    console.error(`${signal}: stopping after the step under way, then cleaning up (again to stop at once)`);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const cleanups: (() => Promise<void>)[] = [];
  try {
    console.log('Building (or reading the cached) Debian image layers...');
    const fixture = await debianBulkImage();
    stopIfInterrupted();
    const registry: TestRegistry = await startRegistry();
    cleanups.push(() => registry.stop());
    const work = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-pull-'));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    await pushImage(registry, 'bench/debian', '1', fixture.image);

    const name = `${registry.host}/bench/debian:1`;
    const figures: Figures = {
      coldMs: [],
      coldPullMs: [],
      warmMs: [],
      unpackMs: [],
      applyMs: [],
      baselineMs: [],
    };
    for (let index = 0; index < runs; index++) {
      const cacheDir = path.join(work, `cache-${index}`);
      const options = { cacheDir, log: () => {} };
      const { image, base } = await timed(figures.coldMs, async () => {
        const started = performance.now();
        const pulled = await resolveImage(name, options);
        figures.coldPullMs.push(performance.now() - started);
        return { image: pulled, base: await ensureRootfs(pulled, cacheDir) };
      });
      if (base.cached) throw new Error(`run ${index + 1}: the cold run found a base in ${cacheDir}`);

      await rm(path.join(cacheDir, 'rootfs'), { recursive: true, force: true });
      await timed(figures.unpackMs, () => ensureRootfs(image, cacheDir));

      // The layers alone, as ensureRootfs applies them, to show what mkfs adds.
      const tree = path.join(work, `tree-${index}`);
      await mkdir(tree);
      await timed(figures.applyMs, () => applyLayers(image.layers, tree));
      await rm(tree, { recursive: true, force: true });

      await timed(figures.baselineMs, () => gnuTarBaseline(image, path.join(work, `baseline-${index}`)));

      const warm = await timed(figures.warmMs, async () =>
        ensureRootfs(await resolveImage(name, options), cacheDir),
      );
      if (!warm.cached) throw new Error(`run ${index + 1}: the warm run built the base again`);

      await rm(cacheDir, { recursive: true, force: true });
      console.log(`run ${index + 1}/${runs} done`);
    }

    report(figures, {
      runs,
      layers: fixture.layers.length,
      tarBytes: fixture.tarBytes,
      compressedBytes: fixture.layers.reduce((sum, layer) => sum + layer.blob.size, 0),
      machine: await describeMachine(work),
    });
  } finally {
    for (const undo of cleanups.reverse()) await undo().catch(() => undefined);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Runs one timed step (after writing dirty pages out, so one step's writeback is not billed to the next). */
async function timed<T>(into: number[], step: () => Promise<T>): Promise<T> {
  stopIfInterrupted();
  await run({ program: 'sync', args: [] });
  const started = performance.now();
  const result = await step();
  into.push(performance.now() - started);
  return result;
}

function stopIfInterrupted(): void {
  if (interrupted) throw new Interrupted(interrupted);
}

/**
 * The floor the unpack is paid against: GNU tar extracts the same blobs (no whiteouts, no path
 * checks), then the same mkfs.ext4 as ensureRootfs makes the same size of base.
 */
async function gnuTarBaseline(image: LocalImage, dir: string): Promise<void> {
  const tree = path.join(dir, 'tree');
  await mkdir(tree, { recursive: true });
  try {
    for (const layer of image.layers) {
      await run({ program: 'tar', args: ['-x', '-z', '-f', layer.path, '-C', tree, '--numeric-owner'] });
    }
    const { stdout } = await run({ program: 'du', args: ['-s', '-B1', '--apparent-size', tree] });
    const sizeMiB = rootfsSizeMiB(Number.parseInt(stdout, 10));
    const args = ['-q', '-F', '-d', tree, '-L', 'rootfs', '-E', 'root_owner=0:0', '-m', '0'];
    await run({ program: 'mkfs.ext4', args: [...args, path.join(dir, 'rootfs.ext4'), `${sizeMiB}M`] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function describeMachine(dir: string): Promise<string> {
  const cpus = os.cpus();
  const { stdout } = await run({ program: 'findmnt', args: ['-n', '-o', 'FSTYPE', '-T', dir] });
  return [
    `${os.availableParallelism()} cores (nproc)`,
    `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    cpus[0]?.model.trim() ?? 'unknown CPU',
    `Linux ${os.release()}`,
    `Node ${process.version}`,
    `cache dir on ${stdout.trim()} (${os.tmpdir()})`,
  ].join(', ');
}

function report(
  figures: Figures,
  image: { runs: number; layers: number; tarBytes: number; compressedBytes: number; machine: string },
): void {
  const throughput = (value: number): string => `${(image.tarBytes / MB / (value / 1000)).toFixed(1)} MB/s`;
  const row = (
    what: string,
    values: number[],
    format: (value: number) => string,
  ): [string, string, string] => [what, format(median(values)), values.map(format).join(' ')];
  const rows: [string, string, string][] = [
    row('cold: pull + rootfs, empty cache', figures.coldMs, ms),
    row('  of which pull (download + verify)', figures.coldPullMs, ms),
    row('warm: everything cached, to a usable base', figures.warmMs, ms),
    row('unpack + mkfs, blobs stored', figures.unpackMs, ms),
    row('  unpack alone (applyLayers)', figures.applyMs, ms),
    row('baseline: GNU tar -x + the same mkfs.ext4', figures.baselineMs, ms),
    row('cold throughput (uncompressed)', figures.coldMs, throughput),
    row('unpack + mkfs throughput (uncompressed)', figures.unpackMs, throughput),
    row('unpack alone throughput (uncompressed)', figures.applyMs, throughput),
    row('baseline throughput (uncompressed)', figures.baselineMs, throughput),
    ['ratio cold / warm (medians)', ratio(figures.coldMs, figures.warmMs, 0), ''],
    ['ratio unpack + mkfs / baseline (medians)', ratio(figures.unpackMs, figures.baselineMs, 2), ''],
  ];
  console.log('');
  console.log(`Pull and root filesystem: bench/run-ts pull, ${image.runs} runs, ${new Date().toISOString()}`);
  console.log(`Machine: ${image.machine}`);
  console.log(
    `Image: ${image.layers} gzip layers, ${(image.tarBytes / MB).toFixed(1)} MB uncompressed (tar), ` +
      `${(image.compressedBytes / MB).toFixed(1)} MB compressed; registry on 127.0.0.1`,
  );
  console.log('');
  console.log(table(['what', 'median', 'runs'], rows));
}

function table(header: [string, string, string], rows: [string, string, string][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => row[column]?.length ?? 0)));
  const line = (row: string[]): string =>
    `| ${row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [
    line(header),
    `| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |`,
    ...rows.map(line),
  ].join('\n');
}

function ratio(over: readonly number[], under: readonly number[], digits: number): string {
  return `${(median(over) / median(under)).toFixed(digits)}×`;
}

function ms(value: number): string {
  return value < 100 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

main().catch((error: unknown) => {
  if (error instanceof Interrupted) {
    process.exitCode = error.message === 'SIGINT' ? 130 : 143;
  } else if (error instanceof UsageError) {
    console.error(error.message);
    process.exitCode = 2;
  } else {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  }
});
