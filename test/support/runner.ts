import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { qemuProcessesUnder } from './cli.js';

/** Parses a GITHUB_ENV / GITHUB_OUTPUT / GITHUB_STATE file: `k=v` lines and `k<<DELIM` blocks. */
export function parseCommandFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, key, delimiter] = heredoc as unknown as [string, string, string];
      const body: string[] = [];
      while (++i < lines.length && lines[i] !== delimiter) body.push(lines[i] as string);
      values[key] = body.join('\n');
    } else if (line.includes('=')) {
      values[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return values;
}

/**
 * Runs dist bundles the way the Actions runner does: INPUT_* env, the
 * GITHUB_* command files, STATE_* from the main step's saveState for post.
 */
export class RunnerJob {
  private constructor(readonly dir: string) {}

  static async create(): Promise<RunnerJob> {
    const dir = await mkdtemp('/tmp/hyper-job-');
    const job = new RunnerJob(dir);
    for (const file of ['state', 'env', 'path', 'output', 'summary']) await writeFile(job.file(file), '');
    return job;
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  get runnerTemp(): string {
    return path.join(this.dir, 'temp');
  }

  async env(): Promise<Record<string, string>> {
    return parseCommandFile(await readFile(this.file('env'), 'utf8'));
  }

  async outputs(): Promise<Record<string, string>> {
    return parseCommandFile(await readFile(this.file('output'), 'utf8'));
  }

  async paths(): Promise<string[]> {
    return (await readFile(this.file('path'), 'utf8')).split('\n').filter(Boolean);
  }

  /** Runs one step's bundle (dist/main/index.js or dist/post/index.js). */
  async step(bundle: string, inputs: Record<string, string>, extraEnv: Record<string, string> = {}) {
    const state = parseCommandFile(await readFile(this.file('state'), 'utf8'));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? os.homedir(),
      HYPER_CACHE_DIR: process.env.HYPER_CACHE_DIR ?? '',
      GITHUB_ACTIONS: 'true',
      RUNNER_TEMP: this.runnerTemp,
      GITHUB_STATE: this.file('state'),
      GITHUB_ENV: this.file('env'),
      GITHUB_PATH: this.file('path'),
      GITHUB_OUTPUT: this.file('output'),
      GITHUB_STEP_SUMMARY: this.file('summary'),
      // See test/support/integration-env.ts: user networking unless the test asks for a mode.
      INPUT_NETWORK: 'user',
      ...Object.fromEntries(
        Object.entries(inputs).map(([k, v]) => [`INPUT_${k.replace(/ /g, '_').toUpperCase()}`, v]),
      ),
      ...Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v])),
      ...extraEnv,
    };
    if (!env.HYPER_CACHE_DIR) delete env.HYPER_CACHE_DIR;
    return execa('node', [bundle], { env, extendEnv: false, reject: false });
  }

  async remove(): Promise<void> {
    // A test that failed before its post step leaves its VMs running: they go with the job.
    for (const pid of await qemuProcessesUnder(this.dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

export const MAIN_BUNDLE = path.resolve('dist/main/index.js');
export const POST_BUNDLE = path.resolve('dist/post/index.js');

/** What a job left behind: live QEMU processes started under it, and anything in its RUNNER_TEMP. */
export async function jobLeftovers(job: RunnerJob): Promise<{ qemu: number[]; temp: string[] }> {
  return { qemu: await qemuProcessesUnder(job.dir), temp: await readdir(job.runnerTemp).catch(() => []) };
}
