import { CommandError, describeEnd } from '../../../src/process/run.js';
import { parseStateJson } from '../../../src/files.js';

test.each([
  [{ exitCode: 1 }, 'exited with code 1'],
  [{ signal: 'SIGABRT' }, 'was killed by SIGABRT'],
  [{ exitCode: undefined, signal: 'SIGSEGV' }, 'was killed by SIGSEGV'],
  [{ timedOutMs: 6000 }, 'did not finish within 6 s'],
  [{ timedOutMs: 1500, signal: 'SIGTERM' }, 'did not finish within 1.5 s'],
  [{ startError: 'ENOENT' }, 'could not be started (ENOENT)'],
  [{}, 'could not be started'],
])('a child that ended as %j %s', (end, text) => {
  expect(describeEnd(end)).toBe(text);
});

test('a command error names the command, how it ended and the tail of its stderr', () => {
  const stderr = Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n');
  const error = new CommandError({ program: 'qemu', args: ['-M', 'a b'] }, { signal: 'SIGABRT' }, stderr);
  expect(error.message).toBe(
    `qemu -M 'a b' was killed by SIGABRT: ...\n${Array.from({ length: 12 }, (_, i) => `line ${i + 8}`).join('\n')}`,
  );
  expect(error.exitCode).toBeUndefined();
  expect(error.end.signal).toBe('SIGABRT');
  expect(new CommandError({ program: 'x', args: [] }, 3, '').message).toBe('x exited with code 3');
});

test.each([
  ['', 'it is empty'],
  ['  \n', 'it is empty'],
  ['{"name": "db", "ports": [', /^not valid JSON: /],
  ['[1, 2]', 'not a JSON object'],
  ['null', 'not a JSON object'],
  ['"text"', 'not a JSON object'],
])('state file text %j is damaged: %s', (text, why) => {
  const parsed = parseStateJson(text);
  expect('why' in parsed && parsed.why).toMatch(why);
});

test('a state file that parses is its value, of the shape asked for', () => {
  expect(parseStateJson('{"a": 1}')).toEqual({ value: { a: 1 } });
  expect(parseStateJson('[{"a": 1}]', 'array')).toEqual({ value: [{ a: 1 }] });
  expect(parseStateJson('{"a": 1}', 'array')).toEqual({ why: 'not a JSON array' });
});
