import {
  CONTROL_PAYLOAD_MAX,
  controlAnswerProblem,
  controlFrame,
  resumeFiles,
} from '../../../src/guest/control.js';

/** The entries of a ustar as hyper-resume walks it: name, mode and content, up to the end blocks. */
function entries(tar: Buffer): { name: string; mode: number; content: string }[] {
  const found = [];
  for (let at = 0; at + 512 <= tar.length && tar[at] !== 0;) {
    const header = tar.subarray(at, at + 512);
    const name = header.subarray(0, 100).toString().replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString(), 8);
    at += 512;
    found.push({
      name,
      mode: parseInt(header.subarray(100, 108).toString(), 8),
      content: tar.subarray(at, at + size).toString('latin1'),
    });
    at += Math.ceil(size / 512) * 512;
  }
  return found;
}

test('a clone gets one frame: magic, length, then its clock, entropy and files in that order', () => {
  const entropy = Buffer.alloc(64, 7);
  const frame = controlFrame(1764583200123456789n, entropy, [
    { name: 'settings', content: Buffer.from('hostname=db\n') },
    { name: 'env', content: Buffer.from('A=1\n'), mode: 0o600 },
  ]);
  expect(frame.subarray(0, 4).toString()).toBe('HYP1');
  const length = frame.readUInt32LE(4);
  expect(length).toBe(frame.length - 8);
  const payload = frame.subarray(8);
  // Two zero blocks end it, as tar's do.
  expect(payload.subarray(payload.length - 1024).every((byte) => byte === 0)).toBe(true);
  expect(entries(payload)).toEqual([
    { name: 'clock', mode: 0o644, content: '1764583200123456789' },
    { name: 'entropy', mode: 0o600, content: entropy.toString('latin1') },
    { name: 'settings', mode: 0o644, content: 'hostname=db\n' },
    { name: 'env', mode: 0o600, content: 'A=1\n' },
  ]);
});

test("a resumed VM's frame: its hosts and resolv.conf as files, and the network entry hyper-resume applies", () => {
  const network = {
    mac: '52:54:00:0a:0b:0c',
    ip: '10.89.3.7',
    prefix: 24,
    gateway: '10.89.3.1',
    hosts: '127.0.0.1\tlocalhost\n10.89.3.7\tdb\n',
    resolvConf: 'nameserver 10.89.3.1\n',
  };
  const frame = controlFrame(5n, Buffer.alloc(64, 1), resumeFiles(network));
  expect(entries(frame.subarray(8)).slice(2)).toEqual([
    { name: 'hosts', mode: 0o644, content: network.hosts },
    { name: 'resolv.conf', mode: 0o644, content: network.resolvConf },
    {
      name: 'network',
      mode: 0o644,
      content: 'mac=52:54:00:0a:0b:0c\naddress=10.89.3.7/24\ngateway=10.89.3.1\n',
    },
  ]);
  // User networking names no MAC: the NIC keeps QEMU's.
  expect(
    resumeFiles({ ...network, mac: undefined })
      .at(-1)
      ?.content.toString(),
  ).toBe('address=10.89.3.7/24\ngateway=10.89.3.1\n');
  // Without a network only the clock and entropy go.
  expect(resumeFiles(undefined)).toEqual([]);
});

test('settings over what hyper-resume takes are refused on the host, naming the limit', () => {
  expect(() =>
    controlFrame(1n, Buffer.alloc(64), [{ name: 'files', content: Buffer.alloc(CONTROL_PAYLOAD_MAX) }]),
  ).toThrow(`over the ${CONTROL_PAYLOAD_MAX} a clone takes`);
});

test.each([
  ['ok\n', undefined],
  ['ok', undefined],
  ['error cannot reseed the RNG\n', 'cannot reseed the RNG'],
  ['error /run/hyper/env: No space left on device', '/run/hyper/env: No space left on device'],
  ['template\n', 'an answer hyper-resume does not give: "template"'],
  ['', 'an answer hyper-resume does not give: ""'],
])('the answer %j', (line, problem) => {
  expect(controlAnswerProblem(line)).toBe(problem);
});
