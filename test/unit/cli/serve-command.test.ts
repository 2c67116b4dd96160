import { UsageError } from '../../../src/cli/args.js';
import { callerHome, defaultSocket, tcpOption } from '../../../src/cli/serve-command.js';

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

describe('callerHome: the one caller whose home bind mounts may come from', () => {
  test("a daemon of a user: that user's home", () => {
    expect(callerHome(1001, '/home/runner', undefined, false).map((h) => h.dir)).toEqual(['/home/runner']);
  });

  test("root with a socket for root only: root's home; with --group the caller is unknown: none", () => {
    expect(callerHome(0, '/root', undefined, false).map((h) => h.dir)).toEqual(['/root']);
    expect(callerHome(0, '/root', 998, false)).toEqual([]);
  });

  test('with a TCP listener any local user may call: none', () => {
    expect(callerHome(1001, '/home/runner', undefined, true)).toEqual([]);
    expect(callerHome(0, '/root', undefined, true)).toEqual([]);
  });
});
