import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { VmRecord } from '../../../src/engine/record.js';
import { ServiceLog } from '../../../src/engine/streams.js';
import { encodeLogRecord, type LogRecord } from '../../../src/vm/log-records.js';
import type { Hypervisor } from '../../../src/vm/hypervisor.js';

// The log file is real; the hypervisor is a stand-in that only says whether QEMU runs
// (ServiceLog asks nothing else of it), so the VM's stop is set by the test.
let dir: string;
let running: boolean;
const hypervisor = { isRunning: async () => running } as unknown as Hypervisor;
const at = 1_700_000_000_000_000_000n;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'hyper-service-log-'));
  running = true;
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function texts(records: LogRecord[]): string[] {
  return records.map((record) => `${record.stream}:${record.data.toString()}`);
}

async function all(records: AsyncIterable<LogRecord>): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const record of records) out.push(record);
  return out;
}

test('what is written between reading the past and following is given once, in order', async () => {
  const file = path.join(dir, 'service.log');
  const second = encodeLogRecord('stdout', Buffer.from('out 2\n'), at + 2n);
  await writeFile(
    file,
    Buffer.concat([encodeLogRecord('stdout', Buffer.from('out 1\n'), at), second.subarray(0, 5)]),
  );
  const log = new ServiceLog({ machine: { dir } } as VmRecord, { hypervisor });

  expect(texts(await all(log.read()))).toEqual(['stdout:out 1\n']);
  // Written after the past was read and before following began: a reader that started
  // over from the log's end here would lose "out 2".
  await appendFile(
    file,
    Buffer.concat([second.subarray(5), encodeLogRecord('stderr', Buffer.from('err 2\n'), at + 3n)]),
  );
  running = false;
  expect(texts(await all(log.follow()))).toEqual(['stdout:out 2\n', 'stderr:err 2\n']);
  expect(await all(log.read())).toEqual([]);
});

test('following waits for what comes until the VM has stopped', async () => {
  const file = path.join(dir, 'service.log');
  await writeFile(file, Buffer.alloc(0));
  const log = new ServiceLog({ machine: { dir } } as VmRecord, { hypervisor });
  const followed = all(log.follow());
  await appendFile(file, encodeLogRecord('stdout', Buffer.from('later\n'), at));
  await new Promise((resolve) => setTimeout(resolve, 300));
  await appendFile(file, encodeLogRecord('stdout', Buffer.from('last\n'), at + 1n));
  running = false;
  expect(texts(await followed)).toEqual(['stdout:later\n', 'stdout:last\n']);
});
