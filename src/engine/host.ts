import path from 'node:path';
import { ensureGuestBundle } from '../guest/bundle.js';
import { chooseAccel, type AccelChoice, type ProbeOptions } from '../install/accel.js';
import { ensureTools, VM_TOOLS } from '../install/tools.js';
import type { Accel, GuestBundle, Hypervisor } from '../vm/hypervisor.js';
import { QEMU_BINARY, QemuHypervisor } from '../vm/qemu/machine.js';
import { cacheDir } from './dirs.js';

/** What every VM on this host shares: the tools, the guest bundle and the accelerator. */
export interface HostContext {
  bundle: GuestBundle;
  accel: Accel;
  hypervisor: Hypervisor;
}

export interface Reporter {
  info(line: string): void;
  warn(line: string): void;
}

export async function prepareHost(
  choice: AccelChoice,
  reporter: Reporter,
  release: { repository?: string | undefined; tag?: string | undefined; token?: string | undefined } = {},
  probe: Pick<ProbeOptions, 'kvmDevice'> = {},
): Promise<HostContext> {
  await ensureTools(VM_TOOLS, reporter.info);
  const bundle = await ensureGuestBundle({
    cacheDir: cacheDir(),
    log: reporter.info,
    releaseRepository: release.repository,
    releaseTag: release.tag,
    githubToken: release.token,
  });
  const decision = await chooseAccel(choice, bundle, {
    ...probe,
    qemu: QEMU_BINARY,
    cacheFile: path.join(cacheDir(), 'accel-probe.json'),
  });
  if (decision.warning) reporter.warn(decision.warning);
  return { bundle, accel: decision.accel, hypervisor: new QemuHypervisor() };
}
