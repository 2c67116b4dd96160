const BLOCK = 512;

/** One regular file for ustar(): a plain name of at most 100 bytes. */
export interface UstarFile {
  name: string;
  content: Buffer;
  /** 0644 when absent. */
  mode?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(file: UstarFile): Buffer {
  const block = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(file.name) > 100 || file.name.includes('/'))
    throw new Error(`"${file.name}" is not a plain file name of at most 100 bytes`);
  block.write(file.name, 0);
  block.write(octal(file.mode ?? 0o644, 8), 100);
  block.write(octal(0, 8), 108);
  block.write(octal(0, 8), 116);
  block.write(octal(file.content.length, 12), 124);
  block.write(octal(0, 12), 136);
  block.write(' '.repeat(8), 148);
  block.write('0', 156);
  block.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return block;
}

/**
 * A tar of a few small regular files, owned by root, as busybox tar reads
 * it: the settings a clone of a boot template gets through the guest agent.
 * Pure.
 */
export function ustar(files: readonly UstarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    parts.push(header(file), file.content);
    const rest = file.content.length % BLOCK;
    if (rest) parts.push(Buffer.alloc(BLOCK - rest));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
