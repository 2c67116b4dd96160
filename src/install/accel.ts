import { access, constants, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run, trimOutput } from '../process/run.js';
import type { Accel, GuestBundle } from '../vm/hypervisor.js';
import { QEMU_BINARY } from '../vm/qemu/machine.js';

export type AccelChoice = 'auto' | Accel;

export interface AccelDecision {
  accel: Accel;
  /** Why TCG was chosen, when it was; shown to the user as a warning. */
  warning?: string;
}

export class AccelError extends Error {
  override name = 'AccelError';
}

export function parseAccelChoice(text: string | undefined, source: string): AccelChoice {
  const value = (text ?? '').trim() || 'auto';
  if (value === 'auto' || value === 'kvm' || value === 'tcg') return value;
  throw new AccelError(`${source}: "${value}" is not an accelerator; use auto, kvm or tcg`);
}

/** A KVM boot to poweroff takes well under a second; a hung one must not stall the job long. */
const PROBE_TIMEOUT_S = 6;

/** The tiny boot that proves KVM works: our kernel, init replaced by an immediate poweroff. Pure. */
export function probeArgs(bundle: GuestBundle, consoleFile: string): string[] {
  // prettier-ignore
  return [
    '-M', 'microvm,x-option-roms=off', '-accel', 'kvm', '-cpu', 'host', '-m', '128M', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-kernel', bundle.kernel, '-initrd', bundle.initrd,
    '-append', 'console=ttyS0 panic=-1 rdinit=/bin/poweroff -- -f',
    '-serial', `file:${consoleFile}`,
  ];
}

/** Boots the probe under KVM; returns undefined when it worked, else why not. */
async function probeKvm(bundle: GuestBundle): Promise<string | undefined> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? '/dev/kvm does not exist' : `/dev/kvm is not usable by this user (${code})`;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-kvm-probe-'));
  try {
    const consoleFile = path.join(dir, 'console');
    const result = await run(
      {
        program: 'timeout',
        args: ['-k', '2', String(PROBE_TIMEOUT_S), QEMU_BINARY, ...probeArgs(bundle, consoleFile)],
      },
      { allowFailure: true },
    );
    const console = await readFile(consoleFile, 'utf8').catch(() => '');
    // "Power down" is the kernel's last word after poweroff; a panic would say "Restarting".
    if (result.exitCode === 0 && console.includes('Power down')) return undefined;
    const detail =
      result.exitCode === 124
        ? `the guest did not power off within ${PROBE_TIMEOUT_S} s`
        : trimOutput(result.stderr || console, 3) || `exit code ${result.exitCode}`;
    return `a KVM test boot failed: ${detail}`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What the probe's answer depends on: the host kernel, the QEMU binary and the guest bundle. */
async function probeKey(bundle: GuestBundle): Promise<string> {
  const { stdout } = await run(
    { program: 'sh', args: ['-c', 'command -v "$1"', 'sh', QEMU_BINARY] },
    { allowFailure: true },
  );
  const qemu = await stat(stdout.trim()).catch(() => undefined);
  const kvm = await stat('/dev/kvm').catch(() => undefined);
  return [
    os.release(),
    stdout.trim(),
    qemu?.size,
    qemu?.mtimeMs,
    bundle.version,
    kvm?.mode,
    kvm?.gid,
    process.getuid?.(),
  ].join('|');
}

/** Probes once per host/QEMU/bundle, remembering the answer in `cacheFile`. */
async function cachedProbe(bundle: GuestBundle, cacheFile: string | undefined): Promise<string | undefined> {
  if (!cacheFile) return probeKvm(bundle);
  const key = await probeKey(bundle);
  try {
    const cached = JSON.parse(await readFile(cacheFile, 'utf8')) as { key: string; failure: string | null };
    if (cached.key === key) return cached.failure ?? undefined;
  } catch {
    // No usable cache entry: probe.
  }
  const failure = await probeKvm(bundle);
  await mkdir(path.dirname(cacheFile), { recursive: true });
  await writeFile(cacheFile, JSON.stringify({ key, failure: failure ?? null }));
  return failure;
}

/** Decides the accelerator: probes KVM for real, falls back to TCG with a warning unless KVM was demanded. */
export async function chooseAccel(
  choice: AccelChoice,
  bundle: GuestBundle,
  options: { cacheFile?: string } = {},
): Promise<AccelDecision> {
  if (choice === 'tcg') return { accel: 'tcg' };
  const failure = await cachedProbe(bundle, options.cacheFile);
  if (failure === undefined) return { accel: 'kvm' };
  if (choice === 'kvm')
    throw new AccelError(`accel "kvm" was asked for, but KVM does not work here: ${failure}`);
  return {
    accel: 'tcg',
    warning: `KVM is not usable (${failure}); falling back to TCG software emulation, which is much slower`,
  };
}
