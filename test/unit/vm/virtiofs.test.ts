import { sharePaths } from '../../../src/vm/qemu/virtiofs.js';

test("sharePaths: each share's socket, pid and log sit in the VM's directory, by index", () => {
  expect(sharePaths('/state/vms/db', 0)).toEqual({
    socket: '/state/vms/db/fs0.sock',
    pid: '/state/vms/db/fs0.pid',
    log: '/state/vms/db/fs0.log',
  });
  expect(sharePaths('/state/vms/db/', 12)).toEqual({
    socket: '/state/vms/db/fs12.sock',
    pid: '/state/vms/db/fs12.pid',
    log: '/state/vms/db/fs12.log',
  });
});

test('sharePaths: two shares of one VM never share a file', () => {
  const first = sharePaths('/vm', 1);
  const second = sharePaths('/vm', 2);
  expect(new Set([...Object.values(first), ...Object.values(second)]).size).toBe(6);
});
