import { readdir, readFile } from 'node:fs/promises';
import { runCli } from '../../src/cli/commands.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one `hyper` command line in this process, exactly as src/cli.ts does, capturing its output. */
export async function hyper(...argv: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { out: (text) => (stdout += text), err: (text) => (stderr += text) });
  return { code, stdout, stderr };
}

/** A VM's row of `hyper ps --json`, the fields tests read. */
export interface PsRow {
  name: string;
  state: string;
  pid: number | null;
  origin: string | null;
  ports: { hostPort: number }[];
  memory: { rssMiB: number; pssMiB: number; ownMiB: number } | null;
}

/** The row of `name` in `hyper ps --json`; with `running`, one that has a QEMU pid. */
export async function psRow(name: string, options: { running?: boolean } = {}): Promise<PsRow> {
  const rows = JSON.parse((await hyperOk('ps', '--json')).stdout) as PsRow[];
  const found = rows.find((r) => r.name === name);
  if (!found) throw new Error(`${name} is not listed`);
  if (options.running && !found.pid) throw new Error(`${name} is not running`);
  return found;
}

/** Pids of live QEMU processes whose command line mentions `marker` (a test's state dir). */
export async function qemuProcessesUnder(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('qemu-system') && cmdline.includes(marker)) pids.push(Number(entry));
  }
  return pids;
}

/** Polls an HTTP URL on loopback until it answers 200, or gives up after `timeoutMs`. */
export async function httpGet(url: string, timeoutMs = 30000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
      if (response.ok) return await response.text();
      last = `HTTP ${response.status}`;
    } catch (error: unknown) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms (last: ${last})`);
}

/** Runs a `hyper` command that must succeed; a failure shows its stderr. */
export async function hyperOk(...argv: string[]): Promise<CliResult> {
  const result = await hyper(...argv);
  if (result.code !== 0) throw new Error(`hyper ${argv.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result;
}
