import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { ensureGuestBundle } from '../../../src/guest/bundle.js';
import { readCpuInfo } from '../../../src/host/cpuinfo.js';
import { chooseAccel, HUNG_PROBE_TTL_MS, PORTABLE_CPU_MODELS } from '../../../src/install/accel.js';
import { cacheDir } from '../../support/dirs.js';
import type { GuestBundle } from '../../../src/vm/hypervisor.js';

// Real stand-in programs in QEMU's place (its path is configurable): each ends
// the way a QEMU has been seen to end on some host, or could. /dev/null stands
// in for a /dev/kvm that opens, so every case runs on any machine.
const STAND_INS: Record<string, string> = {
  // AMD EPYC, host kernel 6.18, kvm_pvm: QEMU prints this and aborts.
  abort:
    'echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0" >&2; echo "kvm_buf_set_msrs: Assertion failed" >&2; kill -ABRT $$',
  segfault: 'kill -SEGV $$',
  killed: 'kill -KILL $$',
  'exit 1': 'echo "qemu-system-x86_64: Could not access KVM kernel module: Permission denied" >&2; exit 1',
  // The development machines' kvm_pvm: the guest never powers off.
  hang: 'exec sleep 60',
  'prints nothing': 'exit 0',
  // Exits cleanly but the guest panicked instead of powering off.
  panic:
    'console=""; for a in "$@"; do case "$a" in file:*) console=${a#file:} ;; esac; done; echo "Kernel panic - not syncing: VFS" > "$console"; echo "reboot: Restarting system" >> "$console"',
  // The console path is a directory: it cannot be read.
  'unreadable console': 'for a in "$@"; do case "$a" in file:*) mkdir "${a#file:}" ;; esac; done',
  // A KVM that works: the kernel's last words after poweroff.
  'powers off':
    'for a in "$@"; do case "$a" in file:*) printf "ACPI: PM: Preparing to enter system sleep state S5\\nreboot: Power down\\n" > "${a#file:}" ;; esac; done',
  // A host that lacks a feature of every named model: QEMU 7.2's words under `enforce`.
  'host CPU only':
    'for a in "$@"; do case "$a" in *,enforce) echo "qemu-system-x86_64: warning: host doesn\'t support requested feature: CPUID.07H:EBX.invpcid [bit 10]" >&2; exit 1 ;; esac; done; for a in "$@"; do case "$a" in file:*) echo "reboot: Power down" > "${a#file:}" ;; esac; done',
  // A host that lacks a feature of the first model only ($FIRST_MODEL is set by the test).
  'second model':
    'for a in "$@"; do case "$a" in "$FIRST_MODEL,enforce") echo "qemu-system-x86_64: warning: host doesn\'t support requested feature: CPUID.80000008H:EBX.ibpb [bit 12]" >&2; exit 1 ;; esac; done; for a in "$@"; do case "$a" in file:*) echo "reboot: Power down" > "${a#file:}" ;; esac; done',
};

let work: string;
let bundle: GuestBundle;
/** The named models the probe tries on this machine's CPU vendor (none on other vendors). */
let models: readonly string[];
/** What a KVM that works decides on this machine: the first model, when the vendor has one. */
const kvmWithModel = (model = models[0]) => ({ accel: 'kvm', ...(model ? { cpuModel: model } : {}) });
const standIn = (name: string): string => path.join(work, name.replace(/ /g, '-'));

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'hyper-probe-'));
  for (const [name, body] of Object.entries(STAND_INS)) {
    await writeFile(standIn(name), `#!/bin/sh\n${body}\n`);
    await chmod(standIn(name), 0o755);
  }
  await writeFile(path.join(work, 'not-executable'), '#!/bin/sh\nexit 0\n');
  bundle = await ensureGuestBundle({ cacheDir: cacheDir(), log: () => undefined });
  models = PORTABLE_CPU_MODELS[(await readCpuInfo()).vendor ?? ''] ?? [];
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const probe = (qemu: string, timeoutMs = 2000) =>
  chooseAccel('auto', bundle, { qemu, kvmDevice: '/dev/null', timeoutMs });

describe('the KVM probe never crashes the tool: auto falls back to TCG, naming why', () => {
  test.each([
    ['abort', /QEMU was killed by SIGABRT: .*failed to set MSR 0x10a.*\n.*Assertion failed/s],
    ['segfault', /QEMU was killed by SIGSEGV/],
    ['killed', /QEMU was killed by SIGKILL/],
    ['exit 1', /QEMU exited with code 1: .*Could not access KVM kernel module/],
    ['hang', /the guest did not power off within 2 s/],
    ['prints nothing', /QEMU exited, but the guest printed nothing/],
    ['panic', /QEMU exited, but the guest did not power off cleanly: .*reboot: Restarting system/s],
    ['unreadable console', /QEMU exited, but its console could not be read/],
  ])('a QEMU that ends with "%s"', async (name, reason) => {
    const decision = await probe(standIn(name));
    expect(decision.accel).toBe('tcg');
    expect(decision.warning).toMatch(/^KVM is not usable \(a KVM test boot failed: /);
    expect(decision.warning).toMatch(reason);
    expect(decision.warning).toMatch(/; falling back to TCG software emulation, which is much slower$/);
  });

  test('a missing or non-executable QEMU, or a missing KVM device', async () => {
    expect((await probe(path.join(work, 'absent'))).warning).toContain(
      `${path.join(work, 'absent')} is not an executable program`,
    );
    expect((await probe(path.join(work, 'not-executable'))).warning).toContain(
      `${path.join(work, 'not-executable')} is not an executable program`,
    );
    const decision = await chooseAccel('auto', bundle, {
      qemu: standIn('powers off'),
      kvmDevice: path.join(work, 'kvm'),
    });
    expect(decision).toEqual({
      accel: 'tcg',
      warning: `KVM is not usable (${path.join(work, 'kvm')} does not exist); falling back to TCG software emulation, which is much slower`,
    });
  });

  test('a clean power-off is KVM; "kvm" asked for where it fails is an error naming the reason', async () => {
    expect(await probe(standIn('powers off'))).toEqual(kvmWithModel());
    await expect(
      chooseAccel('kvm', bundle, { qemu: standIn('abort'), kvmDevice: '/dev/null' }),
    ).rejects.toThrow(
      /^accel "kvm" was asked for, but KVM does not work here: a KVM test boot failed: QEMU was killed by SIGABRT/,
    );
  });

  test('the answer is cached per QEMU binary, and a damaged cache file is only a miss', async () => {
    const cacheFile = path.join(work, 'cache', 'accel-probe.json');
    const options = { qemu: standIn('abort'), kvmDevice: '/dev/null', timeoutMs: 2000, cacheFile };
    expect((await chooseAccel('auto', bundle, options)).accel).toBe('tcg');
    expect(JSON.parse(await readFile(cacheFile, 'utf8')).failure).toContain('SIGABRT');
    await writeFile(cacheFile, '{"key": "trunc');
    expect((await chooseAccel('auto', bundle, options)).warning).toContain('SIGABRT');
    expect(JSON.parse(await readFile(cacheFile, 'utf8')).failure).toContain('SIGABRT');
    // A crash is remembered for good; a hang only for an hour.
    expect(JSON.parse(await readFile(cacheFile, 'utf8')).expires).toBeUndefined();
    const hung = { ...options, qemu: standIn('hang') };
    const before = Date.now();
    expect((await chooseAccel('auto', bundle, hung)).warning).toContain('did not power off within 2 s');
    const { expires } = JSON.parse(await readFile(cacheFile, 'utf8')) as { expires: number };
    expect(expires).toBeGreaterThanOrEqual(before + HUNG_PROBE_TTL_MS);
    expect(expires).toBeLessThanOrEqual(Date.now() + HUNG_PROBE_TTL_MS);
    // Another binary is another answer, not the cached one.
    expect(await chooseAccel('auto', bundle, { ...options, qemu: standIn('powers off') })).toEqual(
      kvmWithModel(),
    );
    // The model is remembered with the answer.
    expect(JSON.parse(await readFile(cacheFile, 'utf8')).cpuModel).toBe(models[0]);
  });
});

describe('under KVM the guest CPU is a named model the host has every feature of, else the host CPU', () => {
  test('a host that lacks a feature of every model gives guests its own CPU', async () => {
    expect(await probe(standIn('host CPU only'))).toEqual({ accel: 'kvm' });
  });

  test('a host that lacks a feature of the first model gets the next', async () => {
    process.env.FIRST_MODEL = models[0] ?? 'none';
    try {
      expect(await probe(standIn('second model'))).toEqual(kvmWithModel(models[1]));
    } finally {
      delete process.env.FIRST_MODEL;
    }
  });
});

describe('hyper setup with a QEMU that aborts (the CLI bundle, as a user runs it)', () => {
  let env: Record<string, string>;
  beforeAll(async () => {
    const cache = path.join(work, 'cli-cache');
    await mkdir(cache);
    env = {
      ...(process.env as Record<string, string>),
      HYPER_QEMU: standIn('abort'),
      HYPER_KVM_DEVICE: '/dev/null',
      HYPER_CACHE_DIR: cache,
      HYPER_GUEST_BUNDLE_DIR: path.dirname(bundle.kernel),
    };
    delete env.HYPER_ACCEL;
  });

  test('auto: exits 0 on TCG with a warning that says QEMU was killed by SIGABRT', async () => {
    const result = await execa('node', ['dist/cli/index.js', 'setup'], { env, reject: false });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^accel tcg$/m);
    expect(result.stderr).toMatch(
      /warning: KVM is not usable \(a KVM test boot failed: QEMU was killed by SIGABRT: .*failed to set MSR 0x10a/s,
    );
    expect(result.stderr).not.toContain('could not be started');
  });

  test('--accel kvm: exits 125 naming the reason', async () => {
    const result = await execa('node', ['dist/cli/index.js', 'setup', '--accel', 'kvm'], {
      env,
      reject: false,
    });
    expect(result.exitCode).toBe(125);
    expect(result.stderr).toContain(
      'accel "kvm" was asked for, but KVM does not work here: a KVM test boot failed: QEMU was killed by SIGABRT',
    );
  });
});
