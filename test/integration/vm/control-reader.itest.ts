import { execa, type ResultPromise } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { resumeFiles } from '../../../src/guest/control.js';
import type { GuestNetwork } from '../../../src/guest/config.js';
import { ustar, type UstarFile } from '../../../src/guest/ustar.js';

// The guest's reader of the control port (guest/hyper-resume.c), built from
// the guest's sources for this host and run in a network namespace this file
// makes, with a dummy eth0. The port is a pseudo-terminal in raw mode (what
// `script` gives its command), which reads and writes as a connected
// virtio-serial port does. The frames carry no clock and no entropy: those
// would set this host's clock and feed its RNG. Their resume path is the
// checkpoint tests' (test/integration/engine/snapshots.itest.ts), in real VMs.

let work: string;
let reader: string;
const ns = `hyt-rd-${randomBytes(3).toString('hex')}`;

const ip = (...args: string[]) => execa('ip', ['-n', ns, ...args]);

beforeAll(async () => {
  work = await mkdtemp('/tmp/hyper-reader-');
  const tools = ['hyper-exec', 'hyper-log', 'hyper-relay', 'hyper-reseed', 'hyper-resume'];
  const objects = [];
  for (const tool of tools) {
    const object = path.join(work, `${tool}.o`);
    await execa('gcc', [
      '-Os',
      '-c',
      `-Dmain=${tool.replace(/-/g, '_')}_main`,
      '-o',
      object,
      `guest/${tool}.c`,
    ]);
    objects.push(object);
  }
  await execa('gcc', ['-Os', '-o', path.join(work, 'hyper-tools'), 'guest/hyper-tools.c', ...objects]);
  reader = path.join(work, 'hyper-resume');
  await symlink('hyper-tools', reader);
  await execa('ip', ['netns', 'add', ns]);
});

afterAll(async () => {
  await execa('ip', ['netns', 'del', ns], { reject: false });
  await rm(work, { recursive: true, force: true });
});

/** eth0 (a veth: this host's kernel may have no dummy driver) as a resumed guest has it: the template's MAC, two addresses and a default route. */
async function savedNetwork(): Promise<void> {
  await ip('link', 'del', 'eth0').catch(() => undefined);
  await ip('link', 'add', 'eth0', 'address', '52:54:00:12:34:56', 'type', 'veth', 'peer', 'name', 'peer0');
  await ip('link', 'set', 'peer0', 'up');
  await ip('link', 'set', 'eth0', 'up');
  await ip('addr', 'add', '10.0.0.9/24', 'dev', 'eth0');
  await ip('addr', 'add', '10.0.0.10/24', 'dev', 'eth0');
  await ip('route', 'add', 'default', 'via', '10.0.0.1');
}

function frame(files: UstarFile[]): Buffer {
  const payload = ustar(files);
  const header = Buffer.alloc(8);
  header.write('HYP1', 0, 'ascii');
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/**
 * Starts the reader as a template's (it reports on `status`, takes one
 * frame, and its parent exits 0 or 1), writes `bytes` once it waits, and
 * returns its answer line and the parent's exit code. The child that reads
 * on ends when `script` closes the terminal; whatever is left in the
 * namespace is ended after.
 */
async function send(bytes: Buffer): Promise<{ answer: string; exitCode: number | undefined; dir: string }> {
  const dir = path.join(work, `run-${randomBytes(3).toString('hex')}`);
  await mkdir(dir);
  const status = path.join(dir, 'status-port');
  await writeFile(status, '');
  const child: ResultPromise = execa(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'script',
      '-qfec',
      `stty raw -echo && exec ${reader} /dev/tty ${dir} ${status} 2> ${dir}/stderr`,
      '/dev/null',
    ],
    { stdin: 'pipe', reject: false, timeout: 60_000 },
  );
  try {
    const deadline = Date.now() + 30_000;
    while ((await readFile(status, 'utf8')) !== 'template\n') {
      if (Date.now() > deadline) throw new Error('the reader did not report "template"');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    let answer = '';
    const answered = new Promise<void>((resolve) =>
      child.stdout?.on('data', (chunk: Buffer) => {
        answer += chunk.toString();
        if (answer.includes('\n')) resolve();
      }),
    );
    child.stdin?.write(bytes);
    await answered;
    child.stdin?.end();
    const result = await child;
    return { answer: answer.split('\n')[0]?.replace(/\r$/, '') ?? '', exitCode: result.exitCode, dir };
  } finally {
    child.kill('SIGKILL');
    const left = (await execa('ip', ['netns', 'pids', ns], { reject: false })).stdout
      .split('\n')
      .filter(Boolean);
    if (left.length) await execa('kill', ['-9', ...left], { reject: false });
  }
}

const network: GuestNetwork = {
  mac: '52:54:00:0a:0b:0c',
  ip: '10.89.3.7',
  prefix: 24,
  gateway: '10.89.3.1',
  hosts: '127.0.0.1\tlocalhost\n10.89.3.7\tdb\n',
  resolvConf: 'nameserver 10.89.3.1\n',
};

test("a resumed VM's frame: eth0 takes its MAC, only its address and its default route; hosts and resolv.conf are written", async () => {
  await savedNetwork();
  const { answer, exitCode, dir } = await send(frame(resumeFiles(network)));
  expect(answer).toBe('ok');
  expect(exitCode).toBe(0);
  const [link] = JSON.parse((await ip('-j', 'addr', 'show', 'eth0')).stdout) as {
    address: string;
    addr_info: { family: string; local: string; prefixlen: number }[];
  }[];
  expect(link?.address).toBe('52:54:00:0a:0b:0c');
  expect(link?.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)).toEqual([
    '10.89.3.7/24',
  ]);
  const routes = JSON.parse((await ip('-j', 'route', 'show', 'default')).stdout) as { gateway: string }[];
  expect(routes.map((route) => route.gateway)).toEqual(['10.89.3.1']);
  expect(await readFile(path.join(dir, 'hosts'), 'utf8')).toBe(network.hosts);
  expect(await readFile(path.join(dir, 'resolv.conf'), 'utf8')).toBe(network.resolvConf);
});

test('user networking names no MAC: the NIC keeps its own', async () => {
  await savedNetwork();
  const { answer } = await send(frame(resumeFiles({ ...network, mac: undefined })));
  expect(answer).toBe('ok');
  const [link] = JSON.parse((await ip('-j', 'link', 'show', 'eth0')).stdout) as { address: string }[];
  expect(link?.address).toBe('52:54:00:12:34:56');
});

test.each([
  [
    'address=10.89.3.300/24\ngateway=10.89.3.1\n',
    'error "10.89.3.300/24" is not an IPv4 address with a prefix',
  ],
  ['address=10.89.3.7/24\n', 'error the network entry needs an address and a gateway'],
  ['address=10.89.3.7/24\ngateway=10.89.3.1\nmtu=9000\n', 'error the network entry has no "mtu"'],
  [
    'mac=52:54:zz:00:00:01\naddress=10.89.3.7/24\ngateway=10.89.3.1\n',
    'error "52:54:zz:00:00:01" is not a MAC address',
  ],
])(
  'a bad network entry %j is answered with what is wrong, and the template parent exits 1',
  async (entry, said) => {
    await savedNetwork();
    const { answer, exitCode } = await send(frame([{ name: 'network', content: Buffer.from(entry) }]));
    expect(answer).toBe(said);
    expect(exitCode).toBe(1);
    // Refused before anything was changed.
    const [link] = JSON.parse((await ip('-j', 'addr', 'show', 'eth0')).stdout) as {
      addr_info: { family: string; local: string }[];
    }[];
    expect(link?.addr_info.filter((a) => a.family === 'inet').map((a) => a.local)).toEqual([
      '10.0.0.9',
      '10.0.0.10',
    ]);
  },
);

test('a frame that does not start with HYP1 is refused', async () => {
  const { answer, exitCode } = await send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  expect(answer).toBe('error the frame does not start with HYP1');
  expect(exitCode).toBe(1);
});
