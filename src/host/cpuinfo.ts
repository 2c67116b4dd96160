import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/**
 * The first processor of /proc/cpuinfo (a host's CPUs are one model). A field
 * the kernel did not print is undefined: x86 prints vendor_id, cpu family,
 * model, model name, flags, `cpu MHz` (some hypervisors leave it out or print
 * 0.000) and bogomips; arm64 prints CPU implementer/architecture/part,
 * Features and BogoMIPS, and no model name.
 */
export interface CpuInfo {
  vendor?: string;
  family?: string;
  model?: string;
  modelName?: string;
  /** The feature flags as the kernel lists them (x86 `flags`, arm64 `Features`). */
  flags?: string;
  /** First 12 hex digits of the flags line's sha256 (of "" when there is none). */
  flagsDigest: string;
  mhz?: number;
  bogomips?: number;
}

function number(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*\d+(\.\d+)?\s*$/.test(text)) return undefined;
  return Number(text);
}

/** Reads the first processor's block of /proc/cpuinfo text; empty or odd text gives a CpuInfo of undefined fields. Pure. */
export function parseCpuInfo(text: string): CpuInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (fields.size > 0) break;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    // The value as the kernel wrote it after ": " (the flags digest must match older records).
    if (!fields.has(key)) fields.set(key, line.slice(colon + 1).replace(/^ /, ''));
  }
  const field = (...keys: string[]): string | undefined => {
    for (const key of keys) {
      const value = fields.get(key);
      if (value !== undefined && value.trim() !== '') return value.trim();
    }
    return undefined;
  };
  const flags = fields.get('flags') ?? fields.get('features');
  const implementer = field('cpu implementer');
  return {
    vendor: field('vendor_id') ?? (implementer ? `implementer ${implementer}` : undefined),
    family: field('cpu family', 'cpu architecture'),
    model: field('model', 'cpu part'),
    modelName: field('model name'),
    flags,
    flagsDigest: createHash('sha256')
      .update(flags ?? '')
      .digest('hex')
      .slice(0, 12),
    mhz: number(field('cpu mhz')),
    bogomips: number(field('bogomips')),
  };
}

/**
 * The host CPU a KVM checkpoint depends on (`-cpu host` hands the guest the
 * host's model and features). "host MODEL NAME (flags DIGEST)" is the form
 * checkpoint records already hold; without a model name (arm64, odd
 * hypervisors) the vendor, family and model stand in, and without those
 * "unknown CPU". Pure.
 */
export function cpuIdentity(info: CpuInfo): string {
  const described =
    info.modelName ??
    ([
      info.vendor,
      info.family === undefined ? undefined : `family ${info.family}`,
      info.model === undefined ? undefined : `model ${info.model}`,
    ]
      .filter((part) => part !== undefined)
      .join(' ') ||
      'unknown CPU');
  return `host ${described} (flags ${info.flagsDigest})`;
}

/** tsc_early_khz when nothing better is known: a plausible rate for a current x86 host. */
export const DEFAULT_TSC_KHZ = 2_000_000;
/** QEMU's tick rate on hosts it has no cycle counter for (aarch64): CLOCK_MONOTONIC in ns. */
export const NANOSECOND_TICKS_KHZ = 1_000_000;

export type TscSource = 'bogomips' | 'cpu MHz' | 'model name' | 'QEMU clock' | 'default';

/** Rates outside 100 MHz to 10 GHz are a misread, not a CPU. */
function plausible(khz: number | undefined): khz is number {
  return khz !== undefined && Number.isFinite(khz) && khz >= 100_000 && khz <= 10_000_000;
}

/**
 * The rate a TCG guest's TSC ticks at, in kHz, for `tsc_early_khz`. Under
 * TCG, QEMU's RDTSC returns cpu_get_ticks(), the host's own cycle counter
 * (rdtsc on an x86 host; the `tsc-frequency` property only changes CPUID), so
 * the right value is the host's TSC rate. On x86, in this order:
 *  1. bogomips / 2: the kernel derives it from its calibrated TSC rate
 *     (lpj_fine = tsc_khz * 1000 / HZ), so it is the TSC even on bare metal;
 *  2. `cpu MHz` when above 0: the TSC rate in a VM, but on bare metal the
 *     current (scaled or boosted) clock, which is why it comes second;
 *  3. the "@ 2.60GHz" of an Intel model name: the nominal rate, which
 *     invariant-TSC parts count at;
 *  4. DEFAULT_TSC_KHZ.
 * On an arm64 host QEMU has no cycle counter to read and counts nanoseconds,
 * so the guest's TSC runs at 1 GHz. Other hosts get the default. Pure.
 */
export function guestTscKhz(info: CpuInfo, arch: string): { khz: number; source: TscSource } {
  if (arch === 'arm64') return { khz: NANOSECOND_TICKS_KHZ, source: 'QEMU clock' };
  if (arch !== 'x64' && arch !== 'ia32') return { khz: DEFAULT_TSC_KHZ, source: 'default' };
  const fromBogomips = info.bogomips === undefined ? undefined : Math.round(info.bogomips * 500);
  if (plausible(fromBogomips)) return { khz: fromBogomips, source: 'bogomips' };
  const fromMhz = info.mhz === undefined ? undefined : Math.round(info.mhz * 1000);
  if (plausible(fromMhz)) return { khz: fromMhz, source: 'cpu MHz' };
  const ghz = /@\s*(\d+(?:\.\d+)?)\s*GHz/i.exec(info.modelName ?? '')?.[1];
  const fromName = ghz === undefined ? undefined : Math.round(Number(ghz) * 1_000_000);
  if (plausible(fromName)) return { khz: fromName, source: 'model name' };
  return { khz: DEFAULT_TSC_KHZ, source: 'default' };
}

let hostCpu: Promise<CpuInfo> | undefined;
/** This host's /proc/cpuinfo, read once; unreadable reads as empty (every field undefined). */
export function readCpuInfo(): Promise<CpuInfo> {
  hostCpu ??= readFile('/proc/cpuinfo', 'utf8').then(parseCpuInfo, () => parseCpuInfo(''));
  return hostCpu;
}
