import { Parser, type ReadEntry } from 'tar';
import { identityChanges, templateName, type TemplateIdentity } from '../../../src/vm/qemu/template.js';
import { ustar } from '../../../src/guest/ustar.js';
import { shellQuote } from '../../../src/process/run.js';
import { parseTemplateMode } from '../../../src/engine/settings.js';

const identity: TemplateIdentity = {
  format: 1,
  bundle: '9a15d50c6ef94b25',
  kernel: '/b/vmlinuz|14190528|1700000000000',
  initrd: '/b/initrd.img|5078963|1700000000000',
  qemu: 'QEMU emulator version 7.2.22 (/usr/bin/qemu-system-x86_64|18397984|1)',
  accel: 'tcg',
  cpu: 'max',
  cmdline: 'console=ttyS0 quiet panic=-1 reboot=t pci=off cryptomgr.notests tsc_early_khz=2000000',
  memoryMiB: 512,
  cpus: 1,
  slots: 6,
};

describe('template identity', () => {
  test('the directory names the shape and hashes the rest', () => {
    expect(templateName(identity)).toMatch(/^tcg-512m-1c-6s-[0-9a-f]{16}$/);
    expect(templateName({ ...identity })).toBe(templateName(identity));
  });

  test.each([
    ['bundle', { bundle: 'ffffffffffffffff' }],
    ['qemu', { qemu: 'QEMU emulator version 10.0.2 (/usr/bin/qemu-system-x86_64|1|1)' }],
    ['accel', { accel: 'kvm' as const }],
    ['cpu', { cpu: 'host Intel Xeon (flags 1234)' }],
    ['format', { format: 2 }],
  ])('another %s is another template, and the change is named', (field, change) => {
    const other = { ...identity, ...change };
    expect(templateName(other)).not.toBe(templateName(identity));
    expect(identityChanges(identity, other)).toEqual([
      `${field} ${String(identity[field as keyof TemplateIdentity])} -> ${String(other[field as keyof TemplateIdentity])}`,
    ]);
  });

  test('the same identity has no changes', () => {
    expect(identityChanges(identity, { ...identity })).toEqual([]);
  });
});

describe('ustar', () => {
  async function read(archive: Buffer): Promise<{ path: string; mode: number; body: string }[]> {
    const entries: { path: string; mode: number; body: string }[] = [];
    const parser = new Parser({
      onReadEntry: (entry: ReadEntry) => {
        const chunks: Buffer[] = [];
        entry.on('data', (chunk: Buffer) => chunks.push(chunk));
        entry.on('end', () =>
          entries.push({
            path: entry.path,
            mode: entry.mode ?? -1,
            body: Buffer.concat(chunks).toString('latin1'),
          }),
        );
      },
    });
    await new Promise<void>((resolve, reject) => {
      parser.on('end', resolve);
      parser.on('error', reject);
      parser.end(archive);
    });
    return entries;
  }

  test('a tar reader finds each file, its mode and its bytes (NULs and a block boundary included)', async () => {
    const archive = ustar([
      { name: 'settings', content: Buffer.from('hostname=web\nip=10.0.2.15\n') },
      { name: 'argv', content: Buffer.from('httpd\0-f\0') },
      { name: 'entropy', content: Buffer.alloc(512, 7), mode: 0o600 },
    ]);
    expect(archive.length % 512).toBe(0);
    expect(await read(archive)).toEqual([
      { path: 'settings', mode: 0o644, body: 'hostname=web\nip=10.0.2.15\n' },
      { path: 'argv', mode: 0o644, body: 'httpd\0-f\0' },
      { path: 'entropy', mode: 0o600, body: '\x07'.repeat(512) },
    ]);
  });

  test('absolute paths, .. and names over 100 bytes are refused; a relative path keeps its owner', () => {
    for (const name of ['/etc/passwd', 'a/../b', 'a//b', 'x'.repeat(101)])
      expect(() => ustar([{ name, content: Buffer.alloc(0) }])).toThrow('not a relative file path');
    const header = ustar([{ name: 'run/secrets/pw', content: Buffer.from('x'), uid: 100, gid: 101 }]);
    expect(header.subarray(0, 14).toString()).toBe('run/secrets/pw');
    expect(header.subarray(108, 115).toString()).toBe('0000144');
    expect(header.subarray(116, 123).toString()).toBe('0000145');
  });
});

describe('shellQuote', () => {
  test("quotes a path for QEMU's exec: migration, quotes inside included", () => {
    expect(shellQuote("/cache/it's here/state")).toBe(`'/cache/it'\\''s here/state'`);
  });
});

describe('parseTemplateMode', () => {
  test.each(['auto', 'off', 'refresh', ' Auto '])('%j', (text) => {
    expect(parseTemplateMode(text, '--template')).toBe(text.trim().toLowerCase());
  });

  test('anything else names the source and the choices', () => {
    expect(() => parseTemplateMode('sometimes', 'input "templates"')).toThrow(
      'input "templates": "sometimes" is not a template mode; use auto (start VMs as clones of boot templates, made when missing), off (boot every VM in full) or refresh (make new boot templates first)',
    );
  });
});
