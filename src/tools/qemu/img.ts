// In src/tools, just above src/process: src/images (below src/vm) converts and inspects disks too.
import { type ErrorKind, HyperError } from '../../errors.js';
import { formatCommand, run, type Command } from '../../process/run.js';

const QEMU_IMG = 'qemu-img';

export type DiskFormat = 'raw' | 'qcow2';

/** One internal snapshot of a qcow2, as `qemu-img info` lists it. */
export interface ImageSnapshot {
  id: string;
  name: string;
  /** Bytes of saved RAM and device state; 0 for a disk-only snapshot. */
  vmStateSize: number;
}

/** What the code needs from `qemu-img info --output=json`. */
export interface ImageInfo {
  filename: string;
  format: string;
  virtualSize: number;
  backingFilename?: string;
  /** The backing file's path as QEMU resolves it (relative names are taken from the image's directory). */
  fullBackingFilename?: string;
  backingFormat?: string;
  /** A qcow2's external data file. */
  dataFile?: string;
  snapshots: ImageSnapshot[];
}

export interface InfoOptions {
  /** Probe nothing: read the file as this format. */
  format?: DiskFormat;
  /** `-U`: read an image a running QEMU holds open (its lock would refuse us). */
  forceShare?: boolean;
}

export interface ConvertFormats {
  from?: DiskFormat;
  to: DiskFormat;
}

export class QemuOutputError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  override name = 'QemuOutputError';
}

/** The command lines, pure, so tests assert them exactly. */
export const qemuImgCommand = {
  /** A thin qcow2 over `backing`, which is never written. */
  createOverlay(file: string, backing: string, backingFormat: DiskFormat): Command {
    return {
      program: QEMU_IMG,
      args: ['create', '-q', '-f', 'qcow2', '-F', backingFormat, '-b', backing, file],
    };
  },

  /** Without `from`, qemu-img probes the source's format. */
  convert(source: string, target: string, formats: ConvertFormats): Command {
    const from = formats.from ? ['-f', formats.from] : [];
    return { program: QEMU_IMG, args: ['convert', '-q', ...from, '-O', formats.to, source, target] };
  },

  info(file: string, options: InfoOptions = {}): Command {
    return {
      program: QEMU_IMG,
      args: [
        'info',
        ...(options.format ? ['-f', options.format] : []),
        ...(options.forceShare ? ['-U'] : []),
        '--output=json',
        file,
      ],
    };
  },

  deleteSnapshot(file: string, tag: string): Command {
    return { program: QEMU_IMG, args: ['snapshot', '-d', tag, file] };
  },

  /** Sets the disk's current state to snapshot `tag`. */
  applySnapshot(file: string, tag: string): Command {
    return { program: QEMU_IMG, args: ['snapshot', '-a', tag, file] };
  },

  /** Points the overlay at `backing` without reading either: the caller vouches that it holds the same data. */
  rebaseUnsafe(file: string, backing: string, backingFormat: DiskFormat): Command {
    return { program: QEMU_IMG, args: ['rebase', '-u', '-F', backingFormat, '-b', backing, file] };
  },
};

/** Parses `qemu-img info --output=json`. `command` names what printed it, for the error. Pure. */
export function parseImageInfo(stdout: string, command = 'qemu-img info'): ImageInfo {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch (error: unknown) {
    throw new QemuOutputError(
      `${command} did not print JSON (${(error as Error).message}): ${stdout.trim().slice(0, 200)}`,
      { cause: error },
    );
  }
  const wrong = (what: string) => new QemuOutputError(`${command} printed JSON without ${what}`);
  if (!isObject(value)) throw wrong('an object');
  const { filename, format } = value;
  const virtualSize = value['virtual-size'];
  if (typeof filename !== 'string') throw wrong('a "filename"');
  if (typeof format !== 'string') throw wrong('a "format"');
  if (typeof virtualSize !== 'number') throw wrong('a "virtual-size"');
  const specific = isObject(value['format-specific']) ? value['format-specific'] : {};
  const data = isObject(specific.data) ? specific.data : {};
  const snapshots = value.snapshots ?? [];
  if (!Array.isArray(snapshots)) throw wrong('a "snapshots" list');
  return {
    filename,
    format,
    virtualSize,
    backingFilename: text(value['backing-filename']),
    fullBackingFilename: text(value['full-backing-filename']),
    backingFormat: text(value['backing-filename-format']),
    dataFile: text(data['data-file']),
    snapshots: snapshots.map((snapshot: unknown) => {
      if (!isObject(snapshot) || typeof snapshot.name !== 'string') throw wrong('a name for each snapshot');
      const vmStateSize = snapshot['vm-state-size'];
      return {
        id: String(snapshot.id),
        name: snapshot.name,
        vmStateSize: typeof vmStateSize === 'number' ? vmStateSize : 0,
      };
    }),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Runs the commands above. */
export const qemuImg = {
  async createOverlay(file: string, backing: string, backingFormat: DiskFormat): Promise<void> {
    await run(qemuImgCommand.createOverlay(file, backing, backingFormat));
  },

  async convert(source: string, target: string, formats: ConvertFormats): Promise<void> {
    await run(qemuImgCommand.convert(source, target, formats));
  },

  async info(file: string, options: InfoOptions = {}): Promise<ImageInfo> {
    const command = qemuImgCommand.info(file, options);
    return parseImageInfo((await run(command)).stdout, formatCommand(command));
  },

  async snapshotNames(file: string, options: InfoOptions = {}): Promise<string[]> {
    return (await qemuImg.info(file, options)).snapshots.map((snapshot) => snapshot.name);
  },

  async deleteSnapshot(file: string, tag: string): Promise<void> {
    await run(qemuImgCommand.deleteSnapshot(file, tag));
  },

  async applySnapshot(file: string, tag: string): Promise<void> {
    await run(qemuImgCommand.applySnapshot(file, tag));
  },

  async rebaseUnsafe(file: string, backing: string, backingFormat: DiskFormat): Promise<void> {
    await run(qemuImgCommand.rebaseUnsafe(file, backing, backingFormat));
  },
};
