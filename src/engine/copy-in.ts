import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MachineSpec } from '../vm/hypervisor.js';
import { vmPaths } from '../vm/paths.js';
import { writeRecord, type VmRecord } from './record.js';

/**
 * The machine to boot: the VM's own, plus the disks and guest file of the
 * archives waiting to be unpacked, when there are any.
 */
export async function machineWithCopies(record: VmRecord): Promise<MachineSpec> {
  const copies = record.copyIn ?? [];
  if (copies.length === 0) return record.machine;
  const list = path.join(vmPaths(record.machine.dir).guestFiles, 'copyin');
  await writeFile(list, copies.map((c) => `${c.serial} ${c.target}\n`).join(''));
  return {
    ...record.machine,
    disks: [
      ...(record.machine.disks ?? []),
      ...copies.map((c) => ({ serial: c.serial, path: c.file, readOnly: true, format: 'raw' as const })),
    ],
    guestFiles: [...record.machine.guestFiles, { name: 'copyin', path: list }],
  };
}

/** After a boot that unpacked them: the archives are forgotten (the next boot must not unpack them again). */
export async function forgetCopies(record: VmRecord): Promise<void> {
  if (!record.copyIn?.length) return;
  delete record.copyIn;
  await writeRecord(record);
  await rm(path.join(record.machine.dir, 'copy-in'), { recursive: true, force: true });
  await rm(path.join(vmPaths(record.machine.dir).guestFiles, 'copyin'), { force: true });
}
