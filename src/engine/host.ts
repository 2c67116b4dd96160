import { ownsAllIds } from '../host/user.js';
import { probeId, vmIdRange } from '../host/vm-ids.js';
import path from 'node:path';
import { ensureGuestBundle } from '../guest/bundle.js';
import { chooseAccel } from '../install/accel.js';
import { ensureTools, vmTools } from '../install/tools.js';
import { knownQemuVersion } from '../tools/qemu/version.js';
import { type BootContext, type JobContext, qemuVersionFile } from './context.js';

export interface Reporter {
  info(line: string): void;
  warn(line: string): void;
}

/** Where a prebuilt guest bundle may come from: the action's own release. */
export interface ReleaseSource {
  repository?: string | undefined;
  tag?: string | undefined;
  token?: string | undefined;
}

/** Installs the host tools, gets the guest bundle and decides the accelerator: what booting a VM needs. */
export async function prepareHost(
  job: JobContext,
  reporter: Reporter,
  release: ReleaseSource = {},
): Promise<BootContext> {
  const { host } = job;
  await ensureTools(vmTools(host.qemu), reporter.info);
  const bundle = await ensureGuestBundle({
    cacheDir: job.cacheDir,
    log: reporter.info,
    releaseRepository: release.repository,
    releaseTag: release.tag,
    githubToken: release.token,
    dir: host.guestBundleDir,
    urlTemplate: host.guestBundleUrl,
    githubApiUrl: host.githubApiUrl,
  });
  // Made (or found) before any QEMU, so that a host where it cannot be fails before anything is made.
  const vmIds = (await ownsAllIds()) ? await vmIdRange() : undefined;
  // Asked here once, with the answer kept on disk: each VM's start needs it (its jail, its RAM file's
  // mode, a template's identity). A QEMU that cannot say it fails there, with that step's message; the
  // probe below says what is wrong with it first.
  await knownQemuVersion(host.qemu, qemuVersionFile(job)).catch(() => undefined);
  const decision = await chooseAccel(job.settings.accel, bundle, {
    qemu: host.qemu,
    ...(vmIds ? { runAs: { uid: probeId(vmIds), gid: probeId(vmIds) } } : {}),
    ...(host.kvmDevice ? { kvmDevice: host.kvmDevice } : {}),
    cacheFile: path.join(job.cacheDir, 'accel-probe.json'),
  });
  if (decision.warning) reporter.warn(decision.warning);
  return {
    ...job,
    ...(vmIds ? { vmIds } : {}),
    bundle,
    accel: decision.accel,
    ...(decision.cpuModel ? { cpuModel: decision.cpuModel } : {}),
  };
}
