import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CommandError, describeEnd, pathCandidates, programPath } from '../../../src/process/run.js';
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

test('programs are looked up on PATH as exec does', () => {
  expect(pathCandidates('ip', '/usr/sbin:/sbin')).toEqual(['/usr/sbin/ip', '/sbin/ip']);
  expect(pathCandidates('ip', undefined)).toEqual(['/usr/bin/ip', '/bin/ip']);
  expect(pathCandidates('ip', '/a::/b')).toEqual(['/a/ip', path.resolve('ip'), '/b/ip']);
  expect(pathCandidates('./tools/x', '/usr/bin')).toEqual(['./tools/x']);
  expect(pathCandidates('/usr/sbin/nft', '/usr/bin')).toEqual(['/usr/sbin/nft']);
  expect(pathCandidates('', '/usr/bin')).toEqual([]);
});

test('programPath takes the first executable file on PATH, skipping directories and files without x', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-path-'));
  const saved = process.env.PATH;
  try {
    for (const sub of ['a', 'b', 'c', 'd']) await mkdir(path.join(dir, sub));
    await mkdir(path.join(dir, 'a', 'tool')); // a directory named like the program
    await writeFile(path.join(dir, 'b', 'tool'), '#!/bin/sh\n'); // not executable
    await writeFile(path.join(dir, 'c', 'tool'), '#!/bin/sh\n');
    await chmod(path.join(dir, 'c', 'tool'), 0o755);
    await writeFile(path.join(dir, 'd', 'tool'), '#!/bin/sh\n');
    await chmod(path.join(dir, 'd', 'tool'), 0o755);
    process.env.PATH = ['a', 'b', 'c', 'd'].map((sub) => path.join(dir, sub)).join(':');
    // Root may execute any file with an x bit; a file with none is not a program for anyone.
    expect(await programPath('tool')).toBe(path.join(dir, 'c', 'tool'));
    expect(await programPath('missing')).toBeUndefined();
    expect(await programPath(path.join(dir, 'b', 'tool'))).toBeUndefined();
  } finally {
    process.env.PATH = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
