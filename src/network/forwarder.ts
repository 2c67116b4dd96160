import net from 'node:net';
import type { PublishedPort } from './ports.js';

/** Where a connection to a published port may go: loopback ports, in the order to try them. */
export type Backends = (containerPort: number) => readonly number[];

export interface Forwarder {
  /** Stops listening and ends the connections it carries. */
  close(): Promise<void>;
}

/**
 * User networking's replicas: listens on each published TCP port and joins
 * every connection to one replica's loopback port, in turn. A replica that
 * refuses (its QEMU is gone) is skipped for the next; a connection that no
 * replica takes is closed.
 */
export async function startForwarder(
  ports: readonly PublishedPort[],
  backends: Backends,
): Promise<Forwarder> {
  const servers: net.Server[] = [];
  const open = new Set<net.Socket>();
  let turn = 0;
  try {
    for (const port of ports) {
      // Half-open both ways: each side's end is passed on, and a reply still flows after a client's FIN.
      const server = net.createServer({ allowHalfOpen: true }, (client) => {
        open.add(client);
        client.once('close', () => open.delete(client));
        client.on('error', () => client.destroy());
        const candidates = backends(port.containerPort);
        const start = turn++;
        const order = candidates.map((_, i) => candidates[(start + i) % candidates.length] as number);
        connectFirst(client, order, open);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: port.hostIp, port: port.hostPort, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      servers.push(server);
    }
  } catch (error: unknown) {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    throw error;
  }
  return {
    async close() {
      for (const socket of open) socket.destroy();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}

/** Joins `client` to the first of `ports` on loopback that accepts; closes it when none does. */
function connectFirst(client: net.Socket, ports: readonly number[], open: Set<net.Socket>): void {
  const [port, ...rest] = ports;
  if (port === undefined || client.destroyed) {
    client.destroy();
    return;
  }
  const upstream = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  open.add(upstream);
  upstream.once('close', () => open.delete(upstream));
  const refused = (): void => {
    upstream.destroy();
    connectFirst(client, rest, open);
  };
  upstream.once('error', refused);
  upstream.once('connect', () => {
    upstream.off('error', refused);
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
}
