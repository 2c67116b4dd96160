import { qemuSandbox } from '../tools/qemu/sandbox.js';
import { access, constants, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type ErrorKind, HyperError } from '../errors.js';
import { isNotFound, writeFileAtomic } from '../files.js';
import {
  CommandError,
  describeEnd,
  onPath,
  programPath,
  run,
  trimOutput,
  type Command,
  type CommandEnd,
} from '../process/run.js';
import { cpuIdentity, readCpuInfo } from '../host/cpuinfo.js';
import type { GuestBundle } from '../types/guest-bundle.js';

/** How a VM's CPU runs: KVM, or TCG (QEMU's software emulation). The probe here decides it. */
export type Accel = 'kvm' | 'tcg';

export type AccelChoice = 'auto' | Accel;

export interface AccelDecision {
  accel: Accel;
  /**
   * Under KVM, the named QEMU CPU model guests get (PORTABLE_CPU_MODELS), so
   * that templates and checkpoints made here load on other hosts of the
   * vendor; absent, guests get "-cpu host" and what is saved stays here.
   */
  cpuModel?: string;
  /** Why TCG was chosen, when it was; shown to the user as a warning. */
  warning?: string;
}

/**
 * The guest CPU models tried under KVM, by host vendor, in order: the first
 * that boots with every feature it names (QEMU's `enforce`) is used. Versioned
 * names, because an alias may change meaning with the machine type. Haswell
 * (x86-64-v3: AVX2, BMI2, FMA, MOVBE) is the oldest Intel model GitHub's
 * hosted runners have run on (Broadwell to Ice Lake and later); v4 drops TSX
 * (off on most hosts since TAA) and adds IBRS. EPYC (Zen 1) is below every
 * AMD EPYC they run on (Rome, Milan, Genoa); v2 adds IBPB. The second of each
 * pair, without the speculation-control bit, is for hosts that hide it.
 * Intel and AMD never share a model: a guest's vendor must not change under it.
 */
export const PORTABLE_CPU_MODELS: Readonly<Record<string, readonly string[]>> = {
  GenuineIntel: ['Haswell-v4', 'Haswell-v2'],
  AuthenticAMD: ['EPYC-v2', 'EPYC-v1'],
};

/** KVM asked for but not usable; a misspelt choice says Invalid where it is parsed. */
export class AccelError extends HyperError {
  static override defaultKind: ErrorKind = 'Unavailable';
  override name = 'AccelError';
}

export function parseAccelChoice(text: string | undefined, source: string): AccelChoice {
  const value = (text ?? '').trim() || 'auto';
  if (value === 'auto' || value === 'kvm' || value === 'tcg') return value;
  throw new AccelError(`${source}: "${value}" is not an accelerator; use auto, kvm or tcg`, {
    kind: 'Invalid',
  });
}

/** A KVM boot to poweroff takes well under a second; a hung one must not stall the job long. */
export const PROBE_TIMEOUT_MS = 6000;

/** Where the probe looks for KVM and which QEMU it boots; tests put stand-ins here. */
export interface ProbeOptions {
  /** Remembers the answer here, keyed by what it depends on. */
  cacheFile?: string;
  /** The QEMU binary; its name is src/vm's (HYPER_QEMU), so the caller passes it in. */
  qemu: string;
  kvmDevice?: string;
  timeoutMs?: number;
  /** When hyper is root: the ids the probe's QEMU drops to, chrooted into its empty temp dir. */
  runAs?: { uid: number; gid: number } | undefined;
}

/**
 * The tiny boot that proves KVM works: our kernel, init replaced by an
 * immediate poweroff. With a named CPU model, QEMU refuses to start when the
 * host lacks any feature the model names. Pure.
 */
export function probeArgs(
  bundle: GuestBundle,
  consoleFile: string,
  cpuModel?: string,
  runAs?: { uid: number; gid: number },
): string[] {
  // Once it has opened /dev/kvm and its files, QEMU drops to `runAs` in the console's (empty) directory.
  const jail = runAs ? ['-runas', `${runAs.uid}:${runAs.gid}`, '-chroot', path.dirname(consoleFile)] : [];
  // prettier-ignore
  return [
    '-M', 'microvm,x-option-roms=off', '-accel', 'kvm', '-cpu', cpuModel ? `${cpuModel},enforce` : 'host',
    '-m', '128M', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    // The probe has no network: nothing it runs needs a privilege change.
    ...qemuSandbox({ dropsPrivileges: runAs !== undefined, spawns: false }),
    ...jail,
    '-kernel', bundle.kernel, '-initrd', bundle.initrd,
    '-append', 'console=ttyS0 panic=-1 rdinit=/bin/poweroff -- -f',
    '-serial', `file:${consoleFile}`,
  ];
}

type ProbeSettings = Required<Omit<ProbeOptions, 'cacheFile' | 'runAs'>> & Pick<ProbeOptions, 'runAs'>;

/** How the probe's QEMU ended, and what its guest printed (undefined: the console could not be read). */
export interface ProbeOutcome {
  end: CommandEnd;
  stderr: string;
  console: string | undefined;
}

/**
 * KVM works only when the test boot powered off cleanly: QEMU exited 0 within
 * the limit and the console ends with the kernel's "Power down" (a panic says
 * "Restarting"). Anything else is a reason not to use it. Pure.
 */
export function judgeProbe(outcome: ProbeOutcome): string | undefined {
  const { end, stderr, console } = outcome;
  if (end.exitCode === 0 && console?.includes('Power down')) return undefined;
  return `a KVM test boot failed: ${probeFailure(end, stderr, console)}`;
}

function probeFailure(end: CommandEnd, stderr: string, console: string | undefined): string {
  if (end.timedOutMs !== undefined) return `the guest did not power off within ${end.timedOutMs / 1000} s`;
  if (end.exitCode !== 0) {
    const detail = trimOutput(stderr, 3);
    return `QEMU ${describeEnd(end)}${detail ? `: ${detail}` : ''}`;
  }
  if (console === undefined) return 'QEMU exited, but its console could not be read';
  if (!console.trim()) return 'QEMU exited, but the guest printed nothing';
  return `QEMU exited, but the guest did not power off cleanly: ${trimOutput(console, 3)}`;
}

interface ProbeResult {
  failure: string | undefined;
  hung: boolean;
  cpuModel?: string;
}

/**
 * Boots the probe under KVM: no failure when it worked, else why not, and
 * whether the guest hung. When it worked, boots it again with each portable
 * CPU model of the host's vendor until one boots. Never throws.
 */
async function probeKvm(bundle: GuestBundle, options: ProbeSettings): Promise<ProbeResult> {
  const failure = await bootOnce(bundle, options);
  if (failure) return { failure: failure.why, hung: failure.hung };
  const vendor = (await readCpuInfo()).vendor ?? '';
  for (const model of PORTABLE_CPU_MODELS[vendor] ?? []) {
    if ((await bootOnce(bundle, options, model)) === undefined)
      return { failure: undefined, hung: false, cpuModel: model };
  }
  return { failure: undefined, hung: false };
}

async function bootOnce(
  bundle: GuestBundle,
  options: ProbeSettings,
  cpuModel?: string,
): Promise<{ why: string; hung: boolean } | undefined> {
  try {
    await access(options.kvmDevice, constants.R_OK | constants.W_OK);
  } catch (error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? `${options.kvmDevice} does not exist`
        : `${options.kvmDevice} is not usable by this user (${code})`;
    return { why, hung: false };
  }
  if (!(await onPath(options.qemu)))
    return { why: `${options.qemu} is not an executable program`, hung: false };
  let dir: string | undefined;
  try {
    dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-kvm-probe-'));
    const consoleFile = path.join(dir, 'console');
    const outcome = await runProbe(
      { program: options.qemu, args: probeArgs(bundle, consoleFile, cpuModel, options.runAs) },
      options.timeoutMs,
    );
    // No console file at all: the guest printed nothing. Any other error: it cannot be read.
    const console = await readFile(consoleFile, 'utf8').catch((error: unknown) =>
      isNotFound(error) ? '' : undefined,
    );
    const why = judgeProbe({ ...outcome, console });
    return why === undefined ? undefined : { why, hung: outcome.end.timedOutMs !== undefined };
  } catch (error: unknown) {
    return { why: `a KVM test boot failed: ${(error as Error).message}`, hung: false };
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function runProbe(command: Command, timeoutMs: number): Promise<Omit<ProbeOutcome, 'console'>> {
  try {
    const result = await run(command, { allowFailure: true, timeoutMs });
    return { end: { exitCode: result.exitCode }, stderr: result.stderr };
  } catch (error: unknown) {
    if (!(error instanceof CommandError)) throw error;
    return { end: error.end, stderr: error.stderr };
  }
}

/** What the probe's answer depends on: the host kernel and CPU, the QEMU binary, the guest bundle and the KVM device. */
async function probeKey(bundle: GuestBundle, options: ProbeSettings): Promise<string> {
  const binary = await programPath(options.qemu);
  const qemu = binary ? await stat(binary).catch(() => undefined) : undefined;
  const kvm = await stat(options.kvmDevice).catch(() => undefined);
  return [
    os.release(),
    cpuIdentity(await readCpuInfo()),
    binary ?? options.qemu,
    qemu?.size,
    qemu?.mtimeMs,
    bundle.version,
    options.kvmDevice,
    kvm?.mode,
    kvm?.gid,
    process.getuid?.(),
  ].join('|');
}

/**
 * A hung test boot is remembered for an hour only: a loaded machine can hang
 * a guest that would boot on a quiet one, while a crash or a missing device
 * is a property of the host.
 */
export const HUNG_PROBE_TTL_MS = 60 * 60 * 1000;

/** A cached answer for `key` at time `now`, or undefined when there is none (a damaged cache file is only a cache miss). Pure. */
export function cachedAnswer(
  text: string,
  key: string,
  now: number,
): { failure: string | undefined; cpuModel?: string } | undefined {
  try {
    const cached = JSON.parse(text) as {
      key?: unknown;
      failure?: unknown;
      expires?: unknown;
      cpuModel?: unknown;
    };
    if (cached.key !== key) return undefined;
    if (typeof cached.expires === 'number' && cached.expires <= now) return undefined;
    return {
      failure: typeof cached.failure === 'string' ? cached.failure : undefined,
      ...(typeof cached.cpuModel === 'string' ? { cpuModel: cached.cpuModel } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Probes once per host/QEMU/bundle, remembering the answer in `cacheFile`. */
async function cachedProbe(
  bundle: GuestBundle,
  options: ProbeSettings,
  cacheFile: string | undefined,
): Promise<Omit<ProbeResult, 'hung'>> {
  if (!cacheFile) return probeKvm(bundle, options);
  const key = await probeKey(bundle, options);
  const cached = cachedAnswer(await readFile(cacheFile, 'utf8').catch(() => ''), key, Date.now());
  if (cached) return cached;
  const { failure, hung, cpuModel } = await probeKvm(bundle, options);
  const entry = {
    key,
    failure: failure ?? null,
    ...(cpuModel ? { cpuModel } : {}),
    ...(hung ? { expires: Date.now() + HUNG_PROBE_TTL_MS } : {}),
  };
  try {
    await mkdir(path.dirname(cacheFile), { recursive: true });
    await writeFileAtomic(cacheFile, JSON.stringify(entry));
  } catch {
    // The answer stands; the next run probes again.
  }
  return { failure, ...(cpuModel ? { cpuModel } : {}) };
}

/** Decides the accelerator: probes KVM for real, falls back to TCG with a warning unless KVM was demanded. */
export async function chooseAccel(
  choice: AccelChoice,
  bundle: GuestBundle,
  options: ProbeOptions,
): Promise<AccelDecision> {
  if (choice === 'tcg') return { accel: 'tcg' };
  const settings: ProbeSettings = {
    qemu: options.qemu,
    kvmDevice: options.kvmDevice ?? '/dev/kvm',
    timeoutMs: options.timeoutMs ?? PROBE_TIMEOUT_MS,
    runAs: options.runAs,
  };
  const { failure, cpuModel } = await cachedProbe(bundle, settings, options.cacheFile);
  if (failure === undefined) return { accel: 'kvm', ...(cpuModel ? { cpuModel } : {}) };
  if (choice === 'kvm')
    throw new AccelError(`accel "kvm" was asked for, but KVM does not work here: ${failure}`);
  return {
    accel: 'tcg',
    warning: `KVM is not usable (${failure}); falling back to TCG software emulation, which is much slower`,
  };
}
