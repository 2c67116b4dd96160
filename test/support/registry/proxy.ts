/**
 * An HTTP proxy on 127.0.0.1 in front of a test registry that injects faults into chosen requests:
 * an error status (429, 503...), a flipped byte in the body, or a connection closed mid-body.
 * Records every request it saw, with its Range header and the status it answered.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** XORs the body byte at `offset` (of the bytes this response carries). */
  | { kind: 'corrupt'; offset: number }
  /** Sends the headers and the first `afterBytes` bytes of the body, then destroys the socket. */
  | { kind: 'cut'; afterBytes: number }
  /**
   * Holds the answer until `inFlight` requests are being answered at once (this
   * one included), or `timeoutMs` has passed, then answers it as is: a test of
   * parallel downloads does not depend on how fast the first one ends.
   */
  | { kind: 'wait'; inFlight: number; timeoutMs: number };

export interface FaultRule {
  method?: string;
  /** Matched against the request path. */
  path: RegExp;
  fault: Fault;
  /** How many matching requests get the fault (then they pass through). Infinity for all. */
  times: number;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  range?: string;
  status: number;
  fault?: Fault['kind'];
}

export interface FaultProxy {
  host: string;
  requests: ProxiedRequest[];
  /** Most requests that were being answered at the same time. */
  maxInFlight(): number;
  addRule(rule: FaultRule): void;
  clearRules(): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const [targetHost = '127.0.0.1', targetPort = '80'] = target.split(':');
  const rules: FaultRule[] = [];
  const requests: ProxiedRequest[] = [];

  const takeFault = (request: IncomingMessage): Fault | undefined => {
    const path = request.url ?? '/';
    const rule = rules.find(
      (candidate) =>
        candidate.times > 0 &&
        (candidate.method === undefined || candidate.method === request.method) &&
        candidate.path.test(path),
    );
    if (!rule) return undefined;
    rule.times--;
    return rule.fault;
  };

  let inFlight = 0;
  let maxInFlight = 0;
  // Answers held by a 'wait' fault, each checking whether enough requests are in flight now.
  const waiting = new Set<() => void>();
  const holdUntil = (fault: Extract<Fault, { kind: 'wait' }>): Promise<void> =>
    new Promise((resolve) => {
      const release = (): void => {
        waiting.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const check = (): void => {
        if (inFlight >= fault.inFlight) release();
      };
      const timer = setTimeout(release, fault.timeoutMs);
      waiting.add(check);
      check();
    });
  const server = createServer((request, response) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    response.once('close', () => inFlight--);
    for (const check of [...waiting]) check();
    const fault = takeFault(request);
    const record: ProxiedRequest = {
      method: request.method ?? 'GET',
      path: request.url ?? '/',
      range: request.headers.range,
      status: 0,
      fault: fault?.kind,
    };
    requests.push(record);

    if (fault?.kind === 'status') {
      record.status = fault.status;
      const body = JSON.stringify({
        errors: [{ code: 'TOOMANYREQUESTS', message: 'injected by the test proxy' }],
      });
      response.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      response.end(body);
      request.resume();
      return;
    }

    const pass = (): void => {
      const upstream = httpRequest(
        {
          host: targetHost,
          port: Number(targetPort),
          method: request.method,
          path: request.url,
          headers: request.headers,
        },
        (answer) => {
          record.status = answer.statusCode ?? 0;
          forward(answer, response, fault);
        },
      );
      upstream.on('error', () => response.destroy());
      request.pipe(upstream);
    };
    if (fault?.kind === 'wait') void holdUntil(fault).then(pass);
    else pass();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    host: `127.0.0.1:${port}`,
    requests,
    maxInFlight: () => maxInFlight,
    addRule: (rule) => rules.push(rule),
    clearRules: () => {
      rules.splice(0);
      maxInFlight = inFlight;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function forward(answer: IncomingMessage, response: ServerResponse, fault: Fault | undefined): void {
  response.writeHead(answer.statusCode ?? 502, answer.headers);
  let offset = 0;
  let cut = false;
  answer.on('data', (chunk: Buffer) => {
    if (cut) return;
    let data = chunk;
    if (fault?.kind === 'corrupt' && fault.offset >= offset && fault.offset < offset + chunk.length) {
      data = Buffer.from(chunk);
      const at = fault.offset - offset;
      data[at] = (data[at] ?? 0) ^ 0xff;
    }
    if (fault?.kind === 'cut' && offset + chunk.length > fault.afterBytes) {
      cut = true;
      response.write(data.subarray(0, Math.max(0, fault.afterBytes - offset)), () =>
        response.socket?.destroy(),
      );
      answer.destroy();
      return;
    }
    offset += chunk.length;
    response.write(data);
  });
  answer.on('end', () => {
    if (!cut) response.end();
  });
}
