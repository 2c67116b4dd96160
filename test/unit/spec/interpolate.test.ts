import { interpolate } from '../../../src/spec/interpolate.js';
import { specError } from './spec-error.js';

const variables = { USER: 'pg', EMPTY: '', PORT: '5432' };

describe('interpolate', () => {
  test.each([
    ['${USER}', 'pg'],
    ['$USER-x', 'pg-x'],
    ['${MISSING}', ''],
    ['${MISSING:-fallback}', 'fallback'],
    ['${EMPTY:-fallback}', 'fallback'],
    ['${EMPTY-fallback}', ''],
    ['${MISSING-fallback}', 'fallback'],
    ['${USER:+set}', 'set'],
    ['${EMPTY:+set}', ''],
    ['${EMPTY+set}', 'set'],
    ['${MISSING:-${USER}}', 'pg'],
    ['${PORT}:${PORT}', '5432:5432'],
    ['$$USER costs $$5', '$USER costs $5'],
    ['a $ b', 'a $ b'],
    ['no variables', 'no variables'],
  ])('%s -> %j', (text, result) => expect(interpolate(text, variables)).toBe(result));

  test.each([
    ['${MISSING:?set MISSING first}', 'variable MISSING is required: set MISSING first'],
    ['${EMPTY:?}', 'variable EMPTY is required: it is not set'],
    ['${USER', 'unterminated "${" in "${USER"; write $$ for a literal $'],
    ['${1X}', '"${1X}" in "${1X}" is not a variable; use ${NAME} or ${NAME:-default}'],
    ['${A B}', '"${A B}" in "${A B}" is not a variable; use ${NAME} or ${NAME:-default}'],
  ])('%s is refused', (text, message) => expect(specError(() => interpolate(text, variables))).toBe(message));
});
