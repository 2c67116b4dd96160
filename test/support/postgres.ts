import { execa } from 'execa';

/** One SQL statement through psql on a published port, as the job's steps would run it; its trimmed output. */
export async function psql(port: string, sql: string, timeoutMs = 60_000): Promise<string> {
  const result = await execa('psql', ['-h', '127.0.0.1', '-p', port, '-U', 'postgres', '-tAc', sql], {
    timeout: timeoutMs,
  });
  return result.stdout.trim();
}

/** Retries `probe` every 250 ms until it resolves; after `timeoutMs` its last error is thrown, named `what`. */
export async function until<T>(what: string, probe: () => Promise<T>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (error: unknown) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(error as Error).message}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
