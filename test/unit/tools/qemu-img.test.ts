import { readFileSync } from 'node:fs';
import {
  parseImageInfo,
  qemuImgCommand,
  QemuOutputError,
  type ImageInfo,
} from '../../../src/tools/qemu/img.js';

/** Output captured from qemu-img 7.2 (Debian 12), temp paths replaced by /tmp/qemu-fixtures. */
function qemuFixture(name: string): string {
  return readFileSync(new URL(`../../fixtures/qemu/${name}`, import.meta.url), 'utf8');
}

const MiB16 = 16 * 1024 * 1024;

describe('parseImageInfo', () => {
  test.each<[string, ImageInfo]>([
    [
      'info-qcow2-raw-backing.json',
      {
        filename: 'overlay.qcow2',
        format: 'qcow2',
        virtualSize: MiB16,
        backingFilename: '/tmp/qemu-fixtures/base.raw',
        fullBackingFilename: '/tmp/qemu-fixtures/base.raw',
        backingFormat: 'raw',
        dataFile: undefined,
        snapshots: [],
      },
    ],
    [
      'info-qcow2-relative-backing.json',
      {
        filename: 'relative.qcow2',
        format: 'qcow2',
        virtualSize: MiB16,
        backingFilename: 'base.raw',
        fullBackingFilename: 'base.raw',
        backingFormat: 'raw',
        dataFile: undefined,
        snapshots: [],
      },
    ],
    [
      'info-qcow2-snapshots.json',
      {
        filename: 'snaps.qcow2',
        format: 'qcow2',
        virtualSize: MiB16,
        backingFilename: undefined,
        fullBackingFilename: undefined,
        backingFormat: undefined,
        dataFile: undefined,
        snapshots: [
          { id: '1', name: 'first', vmStateSize: 0 },
          { id: '2', name: 'second', vmStateSize: 0 },
        ],
      },
    ],
    [
      'info-raw.json',
      {
        filename: 'base.raw',
        format: 'raw',
        virtualSize: MiB16,
        backingFilename: undefined,
        fullBackingFilename: undefined,
        backingFormat: undefined,
        dataFile: undefined,
        snapshots: [],
      },
    ],
    [
      'info-qcow2-data-file.json',
      {
        filename: 'withdata.qcow2',
        format: 'qcow2',
        virtualSize: MiB16,
        backingFilename: undefined,
        fullBackingFilename: undefined,
        backingFormat: undefined,
        dataFile: '/tmp/qemu-fixtures/data.raw',
        snapshots: [],
      },
    ],
  ])('%s', (fixture, expected) => {
    expect(parseImageInfo(qemuFixture(fixture))).toStrictEqual(expected);
  });

  test('output that is not JSON names the command that printed it', () => {
    const parse = () =>
      parseImageInfo(qemuFixture('info-raw-human.txt'), 'qemu-img info -U --output=json a.qcow2');
    expect(parse).toThrow(QemuOutputError);
    expect(parse).toThrow(
      /^qemu-img info -U --output=json a\.qcow2 did not print JSON \(.*\): image: base\.raw/,
    );
  });

  test.each([
    ['[]', 'an object'],
    ['{"format": "raw", "virtual-size": 1}', 'a "filename"'],
    ['{"filename": "a", "format": "qcow2", "virtual-size": 1, "snapshots": {}}', 'a "snapshots" list'],
    [
      '{"filename": "a", "format": "qcow2", "virtual-size": 1, "snapshots": [{"id": "1"}]}',
      'a name for each snapshot',
    ],
  ])('JSON of the wrong shape: %s', (stdout, missing) => {
    expect(() => parseImageInfo(stdout)).toThrow(`qemu-img info printed JSON without ${missing}`);
  });
});

describe('qemuImgCommand', () => {
  test.each([
    [
      qemuImgCommand.createOverlay('vm/rootfs.qcow2', '/cache/base.ext4', 'raw'),
      ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '/cache/base.ext4', 'vm/rootfs.qcow2'],
    ],
    [
      qemuImgCommand.convert('base.ext4', 'base.qcow2', { from: 'raw', to: 'qcow2' }),
      ['convert', '-q', '-f', 'raw', '-O', 'qcow2', 'base.ext4', 'base.qcow2'],
    ],
    [
      qemuImgCommand.convert('base.qcow2', 'base.ext4', { from: 'qcow2', to: 'raw' }),
      ['convert', '-q', '-f', 'qcow2', '-O', 'raw', 'base.qcow2', 'base.ext4'],
    ],
    [
      qemuImgCommand.convert('vol0.qcow2', 'out.qcow2', { to: 'qcow2' }),
      ['convert', '-q', '-O', 'qcow2', 'vol0.qcow2', 'out.qcow2'],
    ],
    [qemuImgCommand.info('a.qcow2'), ['info', '--output=json', 'a.qcow2']],
    [qemuImgCommand.info('a.qcow2', { forceShare: true }), ['info', '-U', '--output=json', 'a.qcow2']],
    [
      qemuImgCommand.info('a.qcow2', { format: 'qcow2' }),
      ['info', '-f', 'qcow2', '--output=json', 'a.qcow2'],
    ],
    [
      qemuImgCommand.info('a.qcow2', { format: 'qcow2', forceShare: true }),
      ['info', '-f', 'qcow2', '-U', '--output=json', 'a.qcow2'],
    ],
    [qemuImgCommand.deleteSnapshot('vol0.qcow2', 'before'), ['snapshot', '-d', 'before', 'vol0.qcow2']],
    [qemuImgCommand.applySnapshot('vol0.qcow2', 'before'), ['snapshot', '-a', 'before', 'vol0.qcow2']],
    [
      qemuImgCommand.rebaseUnsafe('rootfs.qcow2', 'base.qcow2', 'qcow2'),
      ['rebase', '-u', '-F', 'qcow2', '-b', 'base.qcow2', 'rootfs.qcow2'],
    ],
  ])('%j', (command, args) => {
    expect(command).toStrictEqual({ program: 'qemu-img', args });
  });
});
