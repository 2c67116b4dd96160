import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { HyperError } from '../errors.js';

/** Where a request's answer goes: a normal HTTP response, or a raw socket for one that asked to be hijacked. */
export interface Exchange {
  readonly method: string;
  readonly url: URL;
  readonly headers: IncomingHttpHeaders;
  /** The request body read whole, as JSON; undefined when there is none. A 400 naming the error when malformed. */
  json(): Promise<unknown>;
  /** The request body as it arrives (archive uploads). */
  body(): Readable;
  send(status: number, value?: unknown, headers?: Record<string, string>): void;
  /** A streamed 200 response (logs, pull progress, events): write to it, then end it. */
  stream(contentType: string, headers?: Record<string, string>): Writable;
  /**
   * A two-way stream: after 101 Switching Protocols when the client asked to
   * upgrade (docker attach and exec), else a streamed 200 whose input is the
   * rest of the request body. `input` ends when the client half-closes.
   */
  hijack(contentType: string): { output: Writable; input: Readable };
  /** Aborted when the client goes away. */
  readonly closed: AbortSignal;
  /** The request asked to be hijacked (Upgrade: tcp) and has the raw socket. */
  readonly upgraded: boolean;
  readonly sent: boolean;
}

const MAX_JSON_BYTES = 16 * 1024 * 1024;

async function readAll(input: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    size += (chunk as Buffer).length;
    if (size > limit)
      throw new HyperError(`the request body is larger than ${limit} bytes`, { kind: 'Invalid' });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Parses a JSON body; malformed JSON is a 400 that says where. Pure. */
export function parseJsonBody(bytes: Buffer): unknown {
  const text = bytes.toString('utf8').trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (error: unknown) {
    throw new HyperError(`malformed JSON in the request body: ${(error as Error).message}`, {
      kind: 'Invalid',
    });
  }
}

function bodyOf(value: unknown): { bytes: Buffer; type: string } {
  if (value === undefined) return { bytes: Buffer.alloc(0), type: '' };
  if (typeof value === 'string') return { bytes: Buffer.from(value), type: 'text/plain; charset=utf-8' };
  return { bytes: Buffer.from(`${JSON.stringify(value)}\n`), type: 'application/json' };
}

/** An exchange over Node's request and response. */
export function httpExchange(req: IncomingMessage, res: ServerResponse): Exchange {
  const controller = new AbortController();
  res.on('close', () => controller.abort());
  const url = new URL(req.url ?? '/', 'http://docker');
  let bodyTaken = false;
  const takeBody = (): Readable => {
    if (bodyTaken) throw new HyperError('the request body was read twice');
    bodyTaken = true;
    return req;
  };
  const exchange: Exchange = {
    method: req.method ?? 'GET',
    url,
    headers: req.headers,
    json: async () => parseJsonBody(await readAll(takeBody(), MAX_JSON_BYTES)),
    body: takeBody,
    send(status, value, headers = {}) {
      const { bytes, type } = bodyOf(value);
      res.writeHead(status, {
        ...(type ? { 'Content-Type': type } : {}),
        'Content-Length': bytes.length,
        ...headers,
        ...apiHeaders(),
      });
      res.end(bytes);
    },
    stream(contentType, headers = {}) {
      res.writeHead(200, { 'Content-Type': contentType, ...headers, ...apiHeaders() });
      res.flushHeaders();
      return res;
    },
    hijack(contentType) {
      const output = exchange.stream(contentType);
      return { output, input: bodyTaken ? emptyInput() : takeBody() };
    },
    closed: controller.signal,
    upgraded: false,
    get sent() {
      return res.headersSent;
    },
  };
  return exchange;
}

function emptyInput(): Readable {
  const input = new PassThrough();
  input.end();
  return input;
}

/**
 * An exchange over the raw socket of a request that asked to upgrade. Node
 * hands over the socket after the headers; the body (Content-Length bytes)
 * comes first in `head` and what follows, and everything after it is the
 * client's stdin.
 */
export function upgradeExchange(req: IncomingMessage, socket: Socket, head: Buffer): Exchange {
  const controller = new AbortController();
  socket.on('close', () => controller.abort());
  socket.on('error', () => controller.abort());
  const url = new URL(req.url ?? '/', 'http://docker');
  const input = new PassThrough();
  if (head.length > 0) input.write(head);
  socket.pipe(input);
  let length = Number(req.headers['content-length'] ?? 0);
  let sent = false;

  /** Exactly the Content-Length bytes of the body, leaving the rest in `input`. */
  const readBody = async (): Promise<Buffer> => {
    if (length > MAX_JSON_BYTES)
      throw new HyperError(`the request body is larger than ${MAX_JSON_BYTES} bytes`, { kind: 'Invalid' });
    const chunks: Buffer[] = [];
    while (length > 0) {
      const chunk = (input.read() as Buffer | null) ?? (await nextChunk(input));
      if (chunk === null) break;
      const take = chunk.subarray(0, length);
      if (chunk.length > take.length) input.unshift(chunk.subarray(take.length));
      chunks.push(take);
      length -= take.length;
    }
    return Buffer.concat(chunks);
  };
  const writeHead = (status: number, headers: Record<string, string | number>): void => {
    sent = true;
    const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`];
    for (const [name, value] of Object.entries({ ...headers, ...apiHeaders() }))
      lines.push(`${name}: ${value}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  };
  const exchange: Exchange = {
    method: req.method ?? 'POST',
    url,
    headers: req.headers,
    json: async () => parseJsonBody(await readBody()),
    body: () => input,
    send(status, value, headers = {}) {
      const { bytes, type } = bodyOf(value);
      writeHead(status, {
        ...(type ? { 'Content-Type': type } : {}),
        'Content-Length': bytes.length,
        ...headers,
        Connection: 'close',
      });
      socket.end(bytes);
    },
    stream(contentType, headers = {}) {
      writeHead(200, { 'Content-Type': contentType, ...headers, Connection: 'close' });
      return socket;
    },
    hijack(contentType) {
      writeHead(101, { 'Content-Type': contentType, Connection: 'Upgrade', Upgrade: 'tcp' });
      return { output: socket, input };
    },
    closed: controller.signal,
    upgraded: true,
    get sent() {
      return sent;
    },
  };
  return exchange;
}

function nextChunk(input: Readable): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const done = (): void => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
    };
    const onReadable = (): void => {
      const chunk = input.read() as Buffer | null;
      if (chunk === null) return;
      done();
      resolve(chunk);
    };
    const onEnd = (): void => {
      done();
      resolve(null);
    };
    input.on('readable', onReadable);
    input.on('end', onEnd);
  });
}

/** What every response of Docker's carries. */
function apiHeaders(): Record<string, string> {
  return { Server: 'hyper-services', 'Api-Version': API_HEADER_VERSION, Ostype: 'linux' };
}

import { API_VERSION } from './protocol.js';
const API_HEADER_VERSION = API_VERSION;
