import { containerPath, parseStat } from '../../../src/engine/archive.js';
import { HyperError } from '../../../src/errors.js';

describe('containerPath', () => {
  test.each([
    ['/etc/nginx/nginx.conf', '/etc/nginx/nginx.conf'],
    ['/etc/nginx/', '/etc/nginx'],
    ['/etc//nginx///', '/etc/nginx'],
    ['/a/./b/../c', '/a/c'],
    ['/', '/'],
    ['//', '/'],
    // `..` cannot climb above the container's root.
    ['/..', '/'],
    ['/a/../../etc', '/etc'],
  ])('%s is %s', (text, expected) => {
    expect(containerPath(text)).toBe(expected);
  });

  test.each(['etc/hosts', './etc', '../etc', ''])('refuses the relative path "%s"', (text) => {
    expect(() => containerPath(text)).toThrow(`path "${text}" must be absolute in the container`);
  });

  test('a relative path is the client at fault', () => {
    let thrown: unknown;
    try {
      containerPath('etc');
    } catch (error: unknown) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(HyperError);
    expect((thrown as HyperError).kind).toBe('Invalid');
  });
});

describe('parseStat', () => {
  test('a regular file: size, mode from hex, mtime and the last component as its name', () => {
    expect(parseStat('220|81a4|1712345678|/container/etc/hosts\n', '')).toEqual({
      name: 'hosts',
      size: 220,
      mode: 0o100644,
      mtime: 1712345678,
      linkTarget: '',
    });
  });

  test('a directory', () => {
    expect(parseStat('4096|41ed|1700000000|/container/var/lib', '')).toEqual({
      name: 'lib',
      size: 4096,
      mode: 0o40755,
      mtime: 1700000000,
      linkTarget: '',
    });
  });

  test('a symlink keeps the target readlink gave', () => {
    expect(parseStat('10|a1ff|1700000001|/container/usr/bin/sh', '/bin/busybox')).toEqual({
      name: 'sh',
      size: 10,
      mode: 0o120777,
      mtime: 1700000001,
      linkTarget: '/bin/busybox',
    });
  });

  test('a name holding the separator is kept whole', () => {
    expect(parseStat('5|81a4|1|/container/tmp/a|b|c', '').name).toBe('a|b|c');
  });
});
