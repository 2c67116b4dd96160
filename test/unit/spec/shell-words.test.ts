import { splitShellWords } from '../../../src/spec/shell-words.js';
import { specError } from './spec-error.js';

describe('splitShellWords', () => {
  test.each([
    [
      '--health-cmd "pg_isready -U postgres" --health-interval 10s',
      ['--health-cmd', 'pg_isready -U postgres', '--health-interval', '10s'],
    ],
    ["  a   'b c'  ", ['a', 'b c']],
    ['a\\ b c', ['a b', 'c']],
    ['"a \\"q\\" \\$x \\n"', ['a "q" $x \\n']],
    ["'it''s' x", ['its', 'x']],
    ['pre"mid dle"post', ['premid dlepost']],
    ['"" x', ['', 'x']],
    ['a \\\n b', ['a', 'b']],
    ['', []],
  ])('%j', (text, words) => expect(splitShellWords(text)).toEqual(words));

  test.each([
    ['"open', 'unterminated " quote in "\\"open"'],
    ["'open", 'unterminated \' quote in "\'open"'],
    ['end\\', '"end\\\\" ends with a lone backslash'],
  ])('%j is refused', (text, message) => expect(specError(() => splitShellWords(text))).toBe(message));
});
