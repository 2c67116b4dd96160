import { GuestAgent } from './guest-agent.js';

/** A share of a pooled guest-agent connection. release() gives it back; a second call does nothing. */
export interface AgentLease {
  readonly agent: GuestAgent;
  release(): void;
}

interface PooledConnection {
  readonly agent: Promise<GuestAgent>;
  leases: number;
}

/**
 * One guest-agent connection per agent socket, shared by all its users in
 * this process: qemu-ga serves one client at a time, so a second connection
 * would wait until the first is closed. The connection closes when its last
 * lease is released, so that another process (the CLI) can reach the agent
 * between uses, and it leaves the pool when it ends (the VM stopped or
 * rebooted), so that the next acquire connects again.
 */
export class AgentPool {
  private readonly connections = new Map<string, PooledConnection>();

  /** Users who come while the connection is being made wait for that one, whatever their own `timeoutMs`. */
  async acquire(path: string, timeoutMs: number): Promise<AgentLease> {
    const connection = this.connections.get(path) ?? this.open(path, timeoutMs);
    // Counted before the wait, so a release in the meantime cannot close it under this user.
    connection.leases++;
    const agent = await connection.agent;
    let released = false;
    return {
      agent,
      release: () => {
        if (released) return;
        released = true;
        if (--connection.leases > 0) return;
        this.forget(path, connection);
        agent.close();
      },
    };
  }

  private open(path: string, timeoutMs: number): PooledConnection {
    const connection: PooledConnection = { agent: GuestAgent.connect(path, timeoutMs), leases: 0 };
    this.connections.set(path, connection);
    // A connection that failed is not kept: the next acquire tries again.
    void connection.agent.then(
      (agent) => agent.closed.then(() => this.forget(path, connection)),
      () => this.forget(path, connection),
    );
    return connection;
  }

  /** Only this connection: a newer one for the same socket may have taken its place. */
  private forget(path: string, connection: PooledConnection): void {
    if (this.connections.get(path) === connection) this.connections.delete(path);
  }
}

/** The pool of this process: every QemuHypervisor shares it, as they share the VMs. */
export const agentPool = new AgentPool();
