import os from 'node:os';
import type { ContainerEvent, Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';
import { labelsMatch, parseFilters, API_VERSION, MIN_API_VERSION } from './protocol.js';

/** What this daemon reports as its version (the project's). */
export const SERVER_VERSION = '0.1.0';

/** GET|HEAD /_ping: "OK", with the API version headers every response has. */
export function ping(_daemon: Daemon, exchange: Exchange): void {
  exchange.send(200, exchange.method === 'HEAD' ? undefined : 'OK');
}

/** GET /version. */
export function version(_daemon: Daemon, exchange: Exchange): void {
  const details = {
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: '',
    GoVersion: '',
    Os: 'linux',
    Arch: os.arch() === 'x64' ? 'amd64' : os.arch(),
    KernelVersion: os.release(),
    BuildTime: '',
    Experimental: 'false',
  };
  exchange.send(200, {
    Platform: { Name: 'hyper-services (every container a microVM)' },
    Components: [{ Name: 'Engine', Version: SERVER_VERSION, Details: details }],
    Version: SERVER_VERSION,
    ...details,
    Experimental: false,
  });
}

/** GET /info. */
export async function info(daemon: Daemon, exchange: Exchange): Promise<void> {
  const containers = await daemon.job.list();
  const running = containers.filter((c) => c.state.running).length;
  exchange.send(200, {
    ID: 'hyper-services',
    Containers: containers.length,
    ContainersRunning: running,
    ContainersPaused: 0,
    ContainersStopped: containers.length - running,
    Images: (await daemon.job.images()).length,
    Driver: 'hyper-microvm',
    DriverStatus: [],
    Plugins: { Volume: ['local'], Network: ['bridge'], Authorization: null, Log: [] },
    MemoryLimit: true,
    SwapLimit: false,
    CpuCfsPeriod: false,
    CpuCfsQuota: false,
    IPv4Forwarding: true,
    Debug: false,
    NFd: 0,
    NGoroutines: 0,
    SystemTime: new Date().toISOString(),
    LoggingDriver: 'hyper-microvm',
    CgroupDriver: 'none',
    NEventsListener: daemon.events.listenerCount('container'),
    KernelVersion: os.release(),
    OperatingSystem: 'hyper-services',
    OSVersion: '',
    OSType: 'linux',
    Architecture: os.arch() === 'x64' ? 'x86_64' : os.arch(),
    IndexServerAddress: 'https://index.docker.io/v1/',
    RegistryConfig: { IndexConfigs: {}, InsecureRegistryCIDRs: [], Mirrors: [] },
    NCPU: os.cpus().length,
    MemTotal: os.totalmem(),
    DockerRootDir: daemon.job.context.stateDir,
    Name: os.hostname(),
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: SERVER_VERSION,
    Runtimes: { 'hyper-microvm': { path: 'qemu-system-x86_64' } },
    DefaultRuntime: 'hyper-microvm',
    Swarm: { LocalNodeState: 'inactive', ControlAvailable: false },
    LiveRestoreEnabled: false,
    Isolation: '',
    SecurityOptions: [],
    Warnings: null,
  });
}

/**
 * GET /events: container lifecycle events as they happen, one JSON object a
 * line, filtered by type, container, event and label; until the client goes.
 */
export function events(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const output = exchange.stream('application/json');
  const wanted = (event: ContainerEvent): boolean =>
    (!filters.type || filters.type.includes('container')) &&
    (!filters.container || filters.container.some((c) => event.id.startsWith(c) || event.name === c)) &&
    (!filters.event || filters.event.includes(event.action)) &&
    (!filters.label || labelsMatch(event.labels, filters.label));
  const listener = (event: ContainerEvent): void => {
    if (!wanted(event)) return;
    const now = Date.now();
    output.write(
      `${JSON.stringify({
        status: event.action,
        id: event.id,
        from: event.image,
        Type: 'container',
        Action: event.action,
        Actor: {
          ID: event.id,
          Attributes: {
            ...event.labels,
            image: event.image,
            name: event.name,
            ...(event.exitCode === undefined ? {} : { exitCode: String(event.exitCode) }),
          },
        },
        scope: 'local',
        time: Math.floor(now / 1000),
        timeNano: now * 1_000_000,
      })}\n`,
    );
  };
  daemon.events.on('container', listener);
  return new Promise((resolve) => {
    exchange.closed.addEventListener(
      'abort',
      () => {
        daemon.events.off('container', listener);
        output.end();
        resolve();
      },
      { once: true },
    );
  });
}
