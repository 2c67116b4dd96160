import { SpecError } from './container.js';

/** Characters a backslash escapes inside double quotes (POSIX); before anything else it stays. */
const DOUBLE_QUOTE_ESCAPES = '\\"$`\n';

/**
 * Splits a command line into words as a POSIX shell does, with quotes and
 * backslashes but no expansions: `--health-cmd "pg_isready -U postgres"` is two words. Pure.
 */
export function splitShellWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new SpecError(`unterminated ' quote in ${JSON.stringify(text)}`);
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      let end = i + 1;
      for (; end < text.length && text[end] !== '"'; end++) {
        const next = text[end + 1];
        if (text[end] === '\\' && next !== undefined && DOUBLE_QUOTE_ESCAPES.includes(next)) {
          end++;
          if (next !== '\n') word += next;
        } else {
          word += text[end];
        }
      }
      if (end >= text.length) throw new SpecError(`unterminated " quote in ${JSON.stringify(text)}`);
      inWord = true;
      i = end;
    } else if (c === '\\') {
      const next = text[i + 1];
      if (next === undefined) throw new SpecError(`${JSON.stringify(text)} ends with a lone backslash`);
      // Backslash-newline joins lines, as in a shell script.
      if (next !== '\n') {
        word += next;
        inWord = true;
      }
      i++;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}
