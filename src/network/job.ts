import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { BridgeDriver, planBridgeNetwork } from './bridge-driver.js';
import type { MemberRequest, MemberView, NetworkDriver, NetworkRecord, NetworkReporter } from './driver.js';
import { networkPrivilege, type Privilege } from './host.js';
import { checkAliases } from './plan.js';
import { NetworkError, type NetworkSettings } from './settings.js';
import { networkFile, readNetwork, withLock, writeNetwork } from './store.js';
import { allowListRefused, planUserNetwork, subnetRefused, UserDriver } from './user-driver.js';

export type {
  BridgeMember,
  BridgeNetworkRecord,
  MemberRequest,
  MemberView,
  NetworkMember,
  NetworkRecord,
  NetworkReporter,
  UserMember,
  UserNetworkRecord,
} from './driver.js';
export { firewallPlan } from './bridge-driver.js';
export { networkFile, readNetwork } from './store.js';
export { USER_SUBNET } from './user-driver.js';

/** The driver for a network that exists. */
function driverFor(record: NetworkRecord): NetworkDriver {
  return record.mode === 'bridge' ? new BridgeDriver(record) : new UserDriver(record);
}

/**
 * What can be refused before any image is pulled: bridge without root or
 * sudo, and an allow-list or subnet where only user networking is possible.
 * A job network that exists already is what it is.
 */
export async function preflightNetwork(stateDir: string, settings: NetworkSettings): Promise<void> {
  if (settings.mode === 'auto' && settings.allow.length === 0 && !settings.subnet) return;
  if (await readNetwork(stateDir)) return;
  const privilege =
    settings.mode === 'user' ? { reason: 'user networking was asked for' } : await networkPrivilege();
  if (!('reason' in privilege)) return;
  if (settings.mode === 'bridge') throw bridgeRefused(privilege.reason);
  if (settings.allow.length > 0) throw allowListRefused();
  if (settings.subnet) throw subnetRefused(settings.subnet);
}

function bridgeRefused(reason: string): NetworkError {
  return new NetworkError(
    `network bridge needs root or passwordless sudo: ${reason}. Use network user (or auto) to run rootless`,
    { kind: 'Unavailable' },
  );
}

/** Which mode `auto` means here, and why; an explicit mode is checked. */
async function decideMode(
  settings: NetworkSettings,
  reporter: NetworkReporter,
): Promise<{ mode: 'user' } | { mode: 'bridge'; privilege: Privilege }> {
  if (settings.mode === 'user') return { mode: 'user' };
  const privilege = await networkPrivilege();
  if ('reason' in privilege) {
    if (settings.mode === 'bridge') throw bridgeRefused(privilege.reason);
    reporter.info(`network: user (QEMU user networking; bridge needs root or sudo: ${privilege.reason})`);
    return { mode: 'user' };
  }
  return { mode: 'bridge', privilege };
}

/** A new network, made on the host; the one place a mode is chosen. */
async function createNetwork(settings: NetworkSettings, reporter: NetworkReporter): Promise<NetworkDriver> {
  const decided = await decideMode(settings, reporter);
  const id = randomBytes(4).toString('hex');
  const driver =
    decided.mode === 'user'
      ? new UserDriver(planUserNetwork(id, settings, reporter))
      : new BridgeDriver(await planBridgeNetwork(id, settings, decided.privilege, reporter));
  await driver.create(reporter);
  return driver;
}

/**
 * Puts services on the job network, making the network first if there is
 * none: checks names, picks addresses and host ports, makes TAP devices and
 * firewall rules. All or nothing: a failure removes what this call made.
 */
export async function joinNetwork(
  stateDir: string,
  settings: NetworkSettings,
  requests: readonly MemberRequest[],
  reporter: NetworkReporter,
): Promise<NetworkRecord> {
  return withLock(stateDir, async () => {
    const existing = await readNetwork(stateDir);
    if (existing && settings.mode !== 'auto' && settings.mode !== existing.mode) {
      throw new NetworkError(
        `this job's network is already ${existing.mode}; it cannot also be ${settings.mode} (tear it down first)`,
        { kind: 'Conflict' },
      );
    }
    const replaced = new Set(requests.map((r) => r.service));
    const kept = (existing?.members ?? []).filter((m) => !replaced.has(m.service));
    checkAliases([...kept, ...requests]);
    const driver = existing ? driverFor(existing) : await createNetwork(settings, reporter);
    const added = new Set<string>();
    try {
      await driver.removeMembers(replaced);
      for (const request of requests) {
        await driver.addMember(request);
        added.add(request.service);
      }
      await driver.publish();
      await writeNetwork(stateDir, driver.record);
      return driver.record;
    } catch (error: unknown) {
      if (!existing) await driver.remove();
      else await driver.removeMembers(added);
      throw error;
    }
  });
}

/** The network with this service on it: as `hyper up` planned it, else joined now (`hyper run`, import). */
export async function memberOf(
  stateDir: string,
  settings: NetworkSettings,
  request: MemberRequest,
  reporter: NetworkReporter,
): Promise<{ network: NetworkRecord; joined: boolean }> {
  const planned = await readNetwork(stateDir);
  if (planned?.members.some((m) => m.service === request.service)) return { network: planned, joined: false };
  return { network: await joinNetwork(stateDir, settings, [request], reporter), joined: true };
}

/** Takes services off the network; the last one out removes the network and everything it made on the host. */
export async function leaveNetwork(stateDir: string, services: readonly string[]): Promise<void> {
  await withLock(stateDir, async () => {
    const record = await readNetwork(stateDir);
    if (!record) return;
    const driver = driverFor(record);
    await driver.removeMembers(new Set(services));
    if (driver.record.members.length === 0) {
      await driver.remove();
      await rm(networkFile(stateDir), { force: true });
      return;
    }
    await driver.publish();
    await writeNetwork(stateDir, driver.record);
  });
}

/**
 * Gives a member further names (docker network connect --alias): the
 * services that join after it find it by them. Nothing on the host changes.
 */
export async function addAliases(
  stateDir: string,
  service: string,
  aliases: readonly string[],
): Promise<void> {
  await withLock(stateDir, async () => {
    const record = await readNetwork(stateDir);
    const member = record?.members.find((m) => m.service === service);
    if (!record || !member)
      throw new NetworkError(`${service} is not on the job network`, { kind: 'NotFound' });
    const wanted = aliases.filter((alias) => !member.aliases.includes(alias) && alias !== service);
    if (wanted.length === 0) return;
    member.aliases = [...member.aliases, ...wanted];
    checkAliases(record.members);
    await writeNetwork(stateDir, record);
  });
}

/**
 * Takes a replica out of its group's rotation (with the reason) or puts it
 * back (undefined), and brings what the host publishes in line: the
 * firewall's round robin in bridge mode; in user mode the forwarder reads
 * the record. False when the member is no longer on the network.
 */
export async function setRotation(
  stateDir: string,
  service: string,
  outOfRotation: string | undefined,
): Promise<boolean> {
  return withLock(stateDir, async () => {
    const record = await readNetwork(stateDir);
    const member = record?.members.find((m) => m.service === service);
    if (!record || !member) return false;
    if (outOfRotation === undefined) delete member.outOfRotation;
    else member.outOfRotation = outOfRotation;
    const driver = driverFor(record);
    await driver.publish();
    await writeNetwork(stateDir, driver.record);
    return true;
  });
}

/** Removes the whole network, whoever is still on it (teardown). */
export async function removeNetwork(stateDir: string): Promise<void> {
  await withLock(stateDir, async () => {
    const record = await readNetwork(stateDir);
    if (!record) return;
    await driverFor(record).remove();
    await rm(networkFile(stateDir), { force: true });
  });
}

/**
 * One service's view of the job network: how QEMU connects it (and which host
 * ports QEMU itself forwards: user networking's published and loopback ones;
 * none on a bridge, where the firewall publishes), and what the guest
 * configures. Pure.
 */
export function memberView(record: NetworkRecord, service: string, connect: string): MemberView {
  return driverFor(record).view(service, connect);
}
