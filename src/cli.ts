#!/usr/bin/env node
import { runCli } from './cli/commands.js';

// @actions/* libraries print workflow commands (::debug::) on stdout; in a
// terminal they are noise, so they go to stderr only with HYPER_DEBUG set.
if (process.env.GITHUB_ACTIONS !== 'true') {
  const write = process.stdout.write.bind(process.stdout) as (chunk: string | Uint8Array) => boolean;
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof chunk === 'string' && chunk.startsWith('::debug::')) {
      return process.env.HYPER_DEBUG ? process.stderr.write(chunk) : true;
    }
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
}

process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  input: process.stdin,
});
