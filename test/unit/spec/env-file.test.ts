import { parseEnvFile } from '../../../src/spec/env-file.js';
import { specError } from './spec-error.js';

describe('parseEnvFile', () => {
  test('KEY=VALUE lines, comments, blanks, export, quotes', () => {
    const text = [
      '# database',
      '',
      'POSTGRES_USER=app',
      'export POSTGRES_DB = shop ',
      'QUOTED="a b # not a comment"',
      "SINGLE='$literal \\n'",
      'ESCAPED="line\\nnext \\"q\\""',
      'INLINE=value # a comment',
      'EMPTY=',
      'EQUALS=a=b',
      'FROM_HOST',
      'UNSET_ON_HOST',
      '  INDENTED=1\r',
    ].join('\n');
    expect(parseEnvFile(text, 'app.env', { FROM_HOST: 'h' })).toEqual([
      'POSTGRES_USER=app',
      'POSTGRES_DB=shop',
      'QUOTED=a b # not a comment',
      'SINGLE=$literal \\n',
      'ESCAPED=line\nnext "q"',
      'INLINE=value',
      'EMPTY=',
      'EQUALS=a=b',
      'FROM_HOST=h',
      'INDENTED=1',
    ]);
  });

  test.each([
    ['OK=1\nNOT OK=2', 'app.env line 2: "NOT OK=2" is not KEY=VALUE'],
    ['=value', 'app.env line 1: "=value" is not KEY=VALUE'],
  ])('%j is refused', (text, message) =>
    expect(specError(() => parseEnvFile(text, 'app.env', {}))).toBe(message),
  );
});
