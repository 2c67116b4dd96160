import { formatLine, selectLines, splitRecord } from '../../../src/api/containers.js';
import type { LogRecord } from '../../../src/vm/log-records.js';

const at = 1_700_000_000_123_456_789n;
const SECOND = 1_000_000_000n;

const line = (stream: LogRecord['stream'], text: string, timeNs?: bigint): LogRecord =>
  timeNs === undefined ? { stream, data: Buffer.from(text) } : { stream, data: Buffer.from(text), timeNs };
const texts = (lines: readonly LogRecord[]): string[] => lines.map((l) => l.data.toString());

describe('selectLines', () => {
  // One line a second, the streams interleaved.
  const past = [
    line('stdout', 'o1\n', at),
    line('stderr', 'e1\n', at + SECOND),
    line('stdout', 'o2\n', at + 2n * SECOND),
    line('stderr', 'e2\n', at + 3n * SECOND),
  ];
  const all = { tail: -1, sinceNs: undefined, untilNs: undefined };

  test('tail -1 is every line', () => {
    expect(texts(selectLines(past, all))).toEqual(['o1\n', 'e1\n', 'o2\n', 'e2\n']);
  });

  test('tail N is the last N lines over both streams', () => {
    expect(texts(selectLines(past, { ...all, tail: 3 }))).toEqual(['e1\n', 'o2\n', 'e2\n']);
    expect(texts(selectLines(past, { ...all, tail: 1 }))).toEqual(['e2\n']);
  });

  test('tail larger than the log is the whole log', () => {
    expect(texts(selectLines(past, { ...all, tail: 10 }))).toEqual(['o1\n', 'e1\n', 'o2\n', 'e2\n']);
  });

  test('tail 0 is nothing', () => {
    expect(selectLines(past, { ...all, tail: 0 })).toEqual([]);
  });

  test('since and until bound the lines, both ends included', () => {
    expect(texts(selectLines(past, { ...all, sinceNs: at + SECOND }))).toEqual(['e1\n', 'o2\n', 'e2\n']);
    expect(texts(selectLines(past, { ...all, untilNs: at + 2n * SECOND }))).toEqual(['o1\n', 'e1\n', 'o2\n']);
    expect(texts(selectLines(past, { ...all, sinceNs: at + SECOND, untilNs: at + 2n * SECOND }))).toEqual([
      'e1\n',
      'o2\n',
    ]);
  });

  test('the window is in nanoseconds', () => {
    expect(texts(selectLines(past, { ...all, sinceNs: at + 1n }))).toEqual(['e1\n', 'o2\n', 'e2\n']);
    expect(texts(selectLines(past, { ...all, untilNs: at + SECOND - 1n }))).toEqual(['o1\n']);
  });

  test('tail counts from the end of the window', () => {
    expect(texts(selectLines(past, { tail: 1, sinceNs: undefined, untilNs: at + 2n * SECOND }))).toEqual([
      'o2\n',
    ]);
  });

  test('lines without a time (an old log) are never cut by the window', () => {
    const old = [line('stdout', 'before\n'), ...past, line('stderr', 'after\n')];
    expect(
      texts(selectLines(old, { tail: -1, sinceNs: at + 3n * SECOND, untilNs: at + 3n * SECOND })),
    ).toEqual(['before\n', 'e2\n', 'after\n']);
  });
});

describe('splitRecord', () => {
  test('cuts a record at its newlines, each line keeping the stream and time', () => {
    const lines = splitRecord(line('stderr', 'one\ntwo\nthree\n', at));
    expect(lines.map((l) => [l.stream, l.data.toString(), l.timeNs])).toEqual([
      ['stderr', 'one\n', at],
      ['stderr', 'two\n', at],
      ['stderr', 'three\n', at],
    ]);
  });

  test('keeps a trailing partial line', () => {
    expect(texts(splitRecord(line('stdout', 'done\npartial', at)))).toEqual(['done\n', 'partial']);
  });

  test('a record of one line without a newline is itself', () => {
    expect(splitRecord(line('stdout', 'progress 50%', at))).toEqual([line('stdout', 'progress 50%', at)]);
  });

  test('keeps empty lines', () => {
    expect(texts(splitRecord(line('stdout', 'a\n\nb\n')))).toEqual(['a\n', '\n', 'b\n']);
  });

  test('a record without a time gives lines without one', () => {
    expect(splitRecord(line('stdout', 'a\nb\n'))).toEqual([line('stdout', 'a\n'), line('stdout', 'b\n')]);
  });

  test('an empty record is no lines', () => {
    expect(splitRecord(line('stdout', '', at))).toEqual([]);
  });
});

describe('formatLine', () => {
  const plain = { timestamps: false, details: false };

  test('without options, the line as it was', () => {
    expect(formatLine(line('stdout', 'hello\n', at), plain).toString()).toBe('hello\n');
  });

  test('timestamps lead with RFC 3339 and nine digits of nanoseconds, then a space', () => {
    expect(formatLine(line('stdout', 'hello\n', at), { ...plain, timestamps: true }).toString()).toBe(
      '2023-11-14T22:13:20.123456789Z hello\n',
    );
  });

  test('the nanoseconds are padded to nine digits', () => {
    const time = 1_700_000_000_000_000_042n;
    expect(formatLine(line('stdout', 'x\n', time), { ...plain, timestamps: true }).toString()).toBe(
      '2023-11-14T22:13:20.000000042Z x\n',
    );
    expect(
      formatLine(line('stdout', 'x\n', 1_700_000_000n * SECOND), { ...plain, timestamps: true }).toString(),
    ).toBe('2023-11-14T22:13:20.000000000Z x\n');
  });

  test("a line without a time gets Go's zero time", () => {
    expect(formatLine(line('stdout', 'x\n'), { ...plain, timestamps: true }).toString()).toBe(
      '0001-01-01T00:00:00.000000000Z x\n',
    );
  });

  test('details adds a single leading space', () => {
    expect(formatLine(line('stderr', 'hello\n', at), { ...plain, details: true }).toString()).toBe(
      ' hello\n',
    );
  });

  test('both: the time, its space, then the details space', () => {
    expect(formatLine(line('stdout', 'hello\n', at), { timestamps: true, details: true }).toString()).toBe(
      '2023-11-14T22:13:20.123456789Z  hello\n',
    );
  });
});
