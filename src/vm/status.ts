import { readFile } from 'node:fs/promises';

/** What the guest init has reported on its hyper.status port. */
export interface GuestStatus {
  booted: boolean;
  servicePid?: number;
  exitCode?: number;
  failure?: string;
  halted: boolean;
}

/** Parses the hyper.status lines written by guest/init. Pure. */
export function parseGuestStatus(text: string): GuestStatus {
  const status: GuestStatus = { booted: false, halted: false };
  for (const line of text.split('\n')) {
    const [event, ...rest] = line.trim().split(' ');
    const value = rest.join(' ');
    if (event === 'booted') status.booted = true;
    else if (event === 'started') status.servicePid = Number(value);
    else if (event === 'exited') status.exitCode = Number(value);
    else if (event === 'failed') status.failure = value;
    else if (event === 'halted') status.halted = true;
  }
  return status;
}

export async function readGuestStatus(file: string): Promise<GuestStatus> {
  try {
    return parseGuestStatus(await readFile(file, 'utf8'));
  } catch {
    return { booted: false, halted: false };
  }
}
