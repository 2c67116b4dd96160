/**
 * The service log as the guest's hyper-log writes it: records of 0x1e, the
 * stream (1 stdout, 2 stderr), the length (u32 BE), the guest's wall-clock
 * time in nanoseconds (u64 BE), then the bytes. A log that does not start
 * with a record (written by a guest bundle before hyper-log) is read as
 * stdout without times.
 */
export type LogStream = 'stdout' | 'stderr';

export interface LogRecord {
  stream: LogStream;
  data: Buffer;
  /** When the guest read it from the service, in nanoseconds since the epoch; absent in an old log. */
  timeNs?: bigint;
}

const MARK = 0x1e;
const HEADER = 14;

/** Turns the log's bytes, in the chunks they are read in, into records; keeps a record cut by a chunk until the rest comes. */
export class LogDecoder {
  private pending = Buffer.alloc(0);
  private raw: boolean | undefined;

  push(chunk: Buffer): LogRecord[] {
    if (this.raw === undefined && chunk.length > 0) this.raw = chunk[0] !== MARK;
    if (this.raw) return chunk.length > 0 ? [{ stream: 'stdout', data: chunk }] : [];
    let buffer = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const records: LogRecord[] = [];
    while (buffer.length >= HEADER) {
      if (buffer[0] !== MARK) {
        // Not a record where one should start: the rest is shown as it is rather than lost.
        records.push({ stream: 'stdout', data: buffer });
        buffer = Buffer.alloc(0);
        break;
      }
      const length = buffer.readUInt32BE(2);
      if (buffer.length < HEADER + length) break;
      records.push({
        stream: buffer[1] === 2 ? 'stderr' : 'stdout',
        data: buffer.subarray(HEADER, HEADER + length),
        timeNs: buffer.readBigUInt64BE(6),
      });
      buffer = buffer.subarray(HEADER + length);
    }
    this.pending = Buffer.from(buffer);
    return records;
  }
}

/** One record as hyper-log writes it (for tests and for logs carried in exports). Pure. */
export function encodeLogRecord(stream: LogStream, data: Buffer, timeNs: bigint): Buffer {
  const header = Buffer.alloc(HEADER);
  header[0] = MARK;
  header[1] = stream === 'stderr' ? 2 : 1;
  header.writeUInt32BE(data.length, 2);
  header.writeBigUInt64BE(timeNs, 6);
  return Buffer.concat([header, data]);
}

/** A whole log's text, both streams in the order they were written. Pure. */
export function logRecordsText(bytes: Buffer): string {
  return Buffer.concat(new LogDecoder().push(bytes).map((record) => record.data)).toString('utf8');
}
