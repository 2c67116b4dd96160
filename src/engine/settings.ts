import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { readStateFile, writeFileAtomic } from '../files.js';
import type { AccelChoice } from '../install/accel.js';
import { DEFAULT_NETWORK, type NetworkSettings } from '../network/settings.js';
import { HyperError } from '../errors.js';
import { cgroupParentProblem, DEFAULT_CGROUP_PARENT } from '../host/cgroups.js';
import { TEMPLATE_MODES, type TemplateMode } from '../vm/hypervisor.js';

export type { TemplateMode };
import { DEFAULT_QEMU } from '../vm/qemu/machine.js';

/**
 * What the engine takes from the host it runs on. A front door reads it once
 * from its environment (hostSettings(env, home)); nothing below the
 * doors reads the environment.
 */
export interface HostSettings {
  /** Where VMs keep their state: HYPER_STATE_DIR, else $XDG_STATE_HOME/hyper. */
  stateDir: string;
  /** Where built things are cached across runs: HYPER_CACHE_DIR, else $XDG_CACHE_HOME/hyper. */
  cacheDir: string;
  /** HYPER_QEMU: the qemu-system binary. */
  qemu: string;
  /** HYPER_KVM_DEVICE: the device the KVM probe opens (tests point it at a stand-in). */
  kvmDevice?: string | undefined;
  /** HYPER_BUILD_TMPDIR: where image layers are unpacked (/dev/shm when it has room). */
  buildScratchDir?: string | undefined;
  /** HYPER_FIREWALL: nft or iptables for bridge networks; chosen when absent. */
  firewall?: string | undefined;
  /** HYPER_GUEST_BUNDLE_DIR, HYPER_GUEST_BUNDLE_URL and GITHUB_API_URL: where the guest bundle comes from. */
  guestBundleDir?: string | undefined;
  guestBundleUrl?: string | undefined;
  githubApiUrl?: string | undefined;
  /** HYPER_REGISTRY_USERNAME and HYPER_REGISTRY_PASSWORD: for images whose service names no credentials of its own. */
  registryCredentials?: { username: string; password: string } | undefined;
  /**
   * HYPER_JAIL=off: QEMU without its jail (no filter, no drop to a VM's
   * uid, no chroot, no cgroup), to measure what the jail costs or to tell
   * whether it is what breaks something. On when absent.
   */
  jail: boolean;
  /**
   * HYPER_CGROUP_PARENT: where the VMs' cgroups go, as dockerd's
   * --cgroup-parent: absolute from each hierarchy's root (`/hyper` when
   * absent), or relative, under hyper's own cgroup (a systemd service with
   * Delegate=yes).
   */
  cgroupParent: string;
}

type Environment = Readonly<Record<string, string | undefined>>;

/** The host settings in `env` (a door passes its own environment); `home` is the user's home directory. Pure. */
export function hostSettings(env: Environment, home: string): HostSettings {
  const stateBase = env.XDG_STATE_HOME || path.join(home, '.local', 'state');
  const cacheBase = env.XDG_CACHE_HOME || path.join(home, '.cache');
  const given = (value: string | undefined): string | undefined => value || undefined;
  return {
    stateDir: env.HYPER_STATE_DIR ? path.resolve(env.HYPER_STATE_DIR) : path.join(stateBase, 'hyper'),
    cacheDir: env.HYPER_CACHE_DIR ? path.resolve(env.HYPER_CACHE_DIR) : path.join(cacheBase, 'hyper'),
    qemu: given(env.HYPER_QEMU) ?? DEFAULT_QEMU,
    kvmDevice: given(env.HYPER_KVM_DEVICE),
    buildScratchDir: given(env.HYPER_BUILD_TMPDIR),
    firewall: given(env.HYPER_FIREWALL),
    guestBundleDir: given(env.HYPER_GUEST_BUNDLE_DIR),
    guestBundleUrl: given(env.HYPER_GUEST_BUNDLE_URL),
    githubApiUrl: given(env.GITHUB_API_URL),
    jail: jailSetting(env.HYPER_JAIL),
    cgroupParent: cgroupParentSetting(env.HYPER_CGROUP_PARENT),
    registryCredentials: env.HYPER_REGISTRY_USERNAME
      ? { username: env.HYPER_REGISTRY_USERNAME, password: env.HYPER_REGISTRY_PASSWORD ?? '' }
      : undefined,
  };
}

function jailSetting(value: string | undefined): boolean {
  if (!value || value === 'on') return true;
  if (value === 'off') return false;
  throw new HyperError(`HYPER_JAIL must be "on" or "off", not "${value}"`, { kind: 'Invalid' });
}

function cgroupParentSetting(value: string | undefined): string {
  if (!value) return DEFAULT_CGROUP_PARENT;
  const problem = cgroupParentProblem(value);
  if (problem) throw new HyperError(`HYPER_CGROUP_PARENT "${value}": ${problem}`, { kind: 'Invalid' });
  return value;
}

/** How images are pulled, beyond credentials: a Docker Hub mirror, registries reached over plain HTTP. */
export interface RegistryPolicy {
  registryMirror?: string | undefined;
  insecureRegistries: string[];
}

/**
 * A job's own settings, kept in `<state dir>/job.json` by the door that made
 * the job, so every later door on the same state dir (the post step, a
 * `hyper` step) works on the same terms. Credentials are never kept.
 */
export interface JobSettings {
  network: NetworkSettings;
  accel: AccelChoice;
  /** Bytes for new volumes that set no size of their own. */
  volumeSize?: number | undefined;
  registry: RegistryPolicy;
  /**
   * Whether VMs start as clones of boot templates (src/vm/qemu/template.ts)
   * and `up`'s services from service templates (src/engine/service-templates.ts);
   * `auto` when absent.
   */
  templates?: TemplateMode | undefined;
}

/** `--template` / the `templates` input / HYPER_TEMPLATES: auto, off or refresh. Pure. */
export function parseTemplateMode(text: string, source: string): TemplateMode {
  const mode = text.trim().toLowerCase();
  if ((TEMPLATE_MODES as readonly string[]).includes(mode)) return mode as TemplateMode;
  throw new HyperError(
    `${source}: "${text}" is not a template mode; use auto (start VMs as clones of boot templates, made when missing), off (boot every VM in full) or refresh (make new boot templates first)`,
    { kind: 'Invalid' },
  );
}

export const DEFAULT_JOB_SETTINGS: JobSettings = {
  network: DEFAULT_NETWORK,
  accel: 'auto',
  registry: { insecureRegistries: [] },
};

export function jobSettingsFile(stateDir: string): string {
  return path.join(stateDir, 'job.json');
}

/** Settings given now win over those saved, which win over the defaults. Pure. */
export function mergeJobSettings(
  saved: Partial<JobSettings> | undefined,
  given: Partial<JobSettings>,
): JobSettings {
  const defined = Object.fromEntries(
    Object.entries(given).filter(([, value]) => value !== undefined),
  ) as Partial<JobSettings>;
  return { ...DEFAULT_JOB_SETTINGS, ...saved, ...defined };
}

export async function readJobSettings(stateDir: string): Promise<Partial<JobSettings> | undefined> {
  const remedy = 'it holds the settings of the job in this state dir; delete it and give the settings again';
  return readStateFile<Partial<JobSettings>>(jobSettingsFile(stateDir), remedy);
}

/** The settings go with the job: once it has no VM and no network left, a new job starts from the defaults. */
export async function forgetJobSettings(stateDir: string): Promise<void> {
  await rm(jobSettingsFile(stateDir), { force: true });
}

export async function writeJobSettings(stateDir: string, settings: JobSettings): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await writeFileAtomic(jobSettingsFile(stateDir), JSON.stringify(settings, null, 2));
}
