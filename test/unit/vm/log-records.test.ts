import { encodeLogRecord, LogDecoder, logRecordsText } from '../../../src/vm/log-records.js';

const at = 1_700_000_000_123_456_789n;

test('records come apart by stream, with their times, however the bytes are cut', () => {
  const bytes = Buffer.concat([
    encodeLogRecord('stdout', Buffer.from('one\n'), at),
    encodeLogRecord('stderr', Buffer.from('two\n'), at + 1n),
  ]);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const decoder = new LogDecoder();
    const records = [...decoder.push(bytes.subarray(0, cut)), ...decoder.push(bytes.subarray(cut))];
    expect(records.map((r) => [r.stream, r.data.toString(), r.timeNs])).toEqual([
      ['stdout', 'one\n', at],
      ['stderr', 'two\n', at + 1n],
    ]);
  }
});

test('a record not yet written whole is held back', () => {
  const record = encodeLogRecord('stdout', Buffer.from('partial'), at);
  expect(new LogDecoder().push(record.subarray(0, record.length - 1))).toEqual([]);
});

test('a log from before the records is stdout without times', () => {
  expect(new LogDecoder().push(Buffer.from('plain text\n'))).toEqual([
    { stream: 'stdout', data: Buffer.from('plain text\n') },
  ]);
  expect(logRecordsText(Buffer.from('plain text\n'))).toBe('plain text\n');
});

test('the text of a log holds both streams in the order written', () => {
  const bytes = Buffer.concat([
    encodeLogRecord('stderr', Buffer.from('a'), at),
    encodeLogRecord('stdout', Buffer.from('b'), at),
  ]);
  expect(logRecordsText(bytes)).toBe('ab');
});
