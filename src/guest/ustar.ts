const BLOCK = 512;

/** One regular file for ustar(): a relative path of at most 100 bytes. */
export interface UstarFile {
  name: string;
  content: Buffer;
  /** 0644 when absent. */
  mode?: number;
  /** root's when absent. */
  uid?: number;
  gid?: number;
}

/** The longest path a ustar header holds without its prefix field. */
export const USTAR_NAME_MAX = 100;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(file: UstarFile): Buffer {
  const block = Buffer.alloc(BLOCK);
  if (
    Buffer.byteLength(file.name) > USTAR_NAME_MAX ||
    file.name.startsWith('/') ||
    file.name.split('/').some((part) => part === '' || part === '..' || part === '.')
  )
    throw new Error(`"${file.name}" is not a relative file path of at most ${USTAR_NAME_MAX} bytes`);
  block.write(file.name, 0);
  block.write(octal(file.mode ?? 0o644, 8), 100);
  block.write(octal(file.uid ?? 0, 8), 108);
  block.write(octal(file.gid ?? 0, 8), 116);
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
 * A tar of a few small regular files, as busybox tar reads it (it makes
 * their parent directories) and as guest/hyper-resume.c reads it: the
 * settings a clone of a boot template gets on its control port, and the
 * files a service is given. Pure.
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
