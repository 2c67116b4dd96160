import { UsageError } from '../../../src/cli/args.js';
import { callerHomes, defaultSocket, tcpOption } from '../../../src/cli/serve-command.js';

describe('defaultSocket: where hyper serve listens unless told', () => {
  test('root: /run/hyper, whatever the environment says', () => {
    expect(defaultSocket({}, 0)).toBe('/run/hyper/docker.sock');
    expect(defaultSocket({ XDG_RUNTIME_DIR: '/run/user/0' }, 0)).toBe('/run/hyper/docker.sock');
  });

  test('a user: their runtime directory', () => {
    expect(defaultSocket({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000)).toBe(
      '/run/user/1000/hyper/docker.sock',
    );
    expect(defaultSocket({ XDG_RUNTIME_DIR: '/run/user/1000/' }, 1000)).toBe(
      '/run/user/1000/hyper/docker.sock',
    );
  });

  test('a user without a runtime directory: none, so the caller asks for --socket', () => {
    expect(defaultSocket({}, 1000)).toBeUndefined();
    expect(defaultSocket({ XDG_RUNTIME_DIR: '' }, 1000)).toBeUndefined();
    expect(defaultSocket({ XDG_RUNTIME_DIR: undefined, HOME: '/home/ci' }, 1000)).toBeUndefined();
  });
});

describe('tcpOption: --tcp PORT or HOST:PORT', () => {
  test.each([
    ['2375', '127.0.0.1', 2375],
    ['0', '127.0.0.1', 0],
    ['65535', '127.0.0.1', 65535],
    ['127.0.0.1:2375', '127.0.0.1', 2375],
    ['[::1]:2375', '::1', 2375],
    ['localhost:2375', 'localhost', 2375],
    // Any host parses; the server is what refuses one that is not loopback.
    ['0.0.0.0:2375', '0.0.0.0', 2375],
  ])('%s', (text, host, port) => {
    expect(tcpOption(text)).toEqual({ host, port });
  });

  test.each([
    '',
    'abc',
    '65536',
    '70000',
    '123456',
    '::1:2375',
    '127.0.0.1:',
    ':2375',
    '2375/tcp',
    '[::1]',
    '1.2.3.4:-1',
  ])('%j is a usage error', (text) => {
    expect(() => tcpOption(text)).toThrow(
      new UsageError(`--tcp ${text}: give PORT or HOST:PORT (HOST 127.0.0.1 or [::1])`),
    );
    expect(() => tcpOption(text)).toThrow(UsageError);
  });
});

describe('callerHomes: the homes bind mounts may come from, of the users the socket admits', () => {
  const passwd = [
    'root:x:0:0:root:/root:/bin/bash',
    'runner:x:1001:1001::/home/runner:/bin/bash',
    'ci:x:1002:998::/home/ci:/bin/bash',
    'other:x:1003:1003::/home/other:/bin/bash',
  ].join('\n');
  const groups = ['root:x:0:', 'hyper:x:998:runner', 'other:x:1003:'].join('\n');

  test("a daemon of a user: that user's home only", () => {
    expect(callerHomes(1001, '/home/runner', undefined, false, passwd, groups).map((h) => h.dir)).toEqual([
      '/home/runner',
    ]);
  });

  test("root with --group: root's home and the group's members', listed or by their own group", () => {
    expect(callerHomes(0, '/root', 998, false, passwd, groups).map((h) => h.dir)).toEqual([
      '/root',
      '/home/runner',
      '/home/ci',
    ]);
    expect(callerHomes(0, '/root', undefined, false, passwd, groups).map((h) => h.dir)).toEqual(['/root']);
  });

  test('with a TCP listener any local user may call: no home', () => {
    expect(callerHomes(1001, '/home/runner', undefined, true, passwd, groups)).toEqual([]);
    expect(callerHomes(0, '/root', 998, true, passwd, groups)).toEqual([]);
  });
});
