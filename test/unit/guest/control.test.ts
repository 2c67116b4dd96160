import { CONTROL_PAYLOAD_MAX, controlAnswerProblem, controlFrame } from '../../../src/guest/control.js';

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
