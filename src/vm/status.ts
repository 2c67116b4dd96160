import { open, readFile } from 'node:fs/promises';

/** What the guest init has reported on its hyper.status port. */
export interface GuestStatus {
  /** The init waits as a boot template (only a template machine says so). */
  template: boolean;
  booted: boolean;
  servicePid?: number;
  /** Set once the service has exited for good: its restart policy, if any, starts it no more. */
  exitCode?: number;
  /** How many times the init started the service again under its restart policy. */
  restarts: number;
  failure?: string;
  halted: boolean;
}

/** Parses the hyper.status lines written by guest/init. Pure. */
export function parseGuestStatus(text: string): GuestStatus {
  const status: GuestStatus = { template: false, booted: false, halted: false, restarts: 0 };
  for (const line of text.split('\n')) {
    const [event, ...rest] = line.trim().split(' ');
    const value = rest.join(' ');
    if (event === 'template') status.template = true;
    else if (event === 'booted') status.booted = true;
    else if (event === 'started') status.servicePid = Number(value);
    else if (event === 'exited') status.exitCode = Number(value);
    else if (event === 'restarting') status.restarts = Number(rest[0]);
    else if (event === 'failed') status.failure = value;
    else if (event === 'halted') status.halted = true;
  }
  return status;
}

export async function readGuestStatus(file: string): Promise<GuestStatus> {
  try {
    return parseGuestStatus(await readFile(file, 'utf8'));
  } catch {
    return { template: false, booted: false, halted: false, restarts: 0 };
  }
}

/** Why a guest died without its init reporting an exit, from its console: a kernel panic. Pure. */
export function crashReason(console: string): string | undefined {
  const panic = /Kernel panic - not syncing: ?(.*)$/m.exec(console);
  if (!panic) return undefined;
  const what = (panic[1] ?? '').trim();
  return what ? `kernel panic: ${what}` : 'kernel panic';
}

/** The console lines around a panic: what led to it, and the start of its trace. Pure. */
export function crashExcerpt(console: string, before = 3, after = 12): string {
  const lines = console.replace(/\r/g, '').trimEnd().split('\n');
  const at = lines.findIndex((line) => line.includes('Kernel panic - not syncing'));
  if (at < 0) return lines.slice(-after).join('\n');
  return lines.slice(Math.max(0, at - before), at + after + 1).join('\n');
}

/** The last `bytes` of a console file: a panic is at the end, and a console can be long. */
export async function readConsoleTail(file: string, bytes = 64 * 1024): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, bytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}
