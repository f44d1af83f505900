import type { AddressInfo, Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { PetriError, toPetriError } from '../errors.ts';
import type { GroupManager } from './groups.ts';
import { writeMembershipStream } from './membership-stream.ts';

/** Event streams one member may hold open at once. */
const STREAMS_PER_MEMBER = 4;
/**
 * Connections one address may hold open at once. The service runs in the
 * node's own process: without a cap, a member opening connections without
 * end would spend the node's file descriptors, which every other function
 * needs too. Joins (held until the barrier), streams and a few requests fit.
 */
export const CONNECTIONS_PER_ADDRESS = 16;

/**
 * The coordination service (DESIGN §10, Boxer's seed): HTTP on the bridge
 * gateway, reachable by group members only (the firewall admits only their
 * addresses, and each request is matched to a member by its source address,
 * which sandboxed instances cannot forge). Nothing a member sends is read but
 * its address: no route takes a body.
 *
 *   POST /v1/join    counts the member towards the barrier; answers once the
 *                    barrier is reached: {group, rank, size, barrier, address, members}
 *   GET  /v1/self    the same, at once
 *   GET  /v1/peers   joined members' addresses, one a line, in rank order
 *   GET  /v1/events  NDJSON: {"type":"members",…} now, then each join and leave
 */
export class Coordinator {
  private readonly app: FastifyInstance;
  private readonly streams = new Map<string, number>();
  private readonly connections = new Map<string, number>();
  private url: string | undefined;

  constructor(private readonly groups: GroupManager) {
    this.app = Fastify({ bodyLimit: 1024 });
    this.app.server.on('connection', (socket: Socket) => this.admit(socket));
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) =>
      done(null, undefined),
    );
    this.app.setErrorHandler((err, _request, reply) => sendError(reply, toPetriError(err)));
    this.app.setNotFoundHandler((request, reply) =>
      sendError(
        reply,
        new PetriError('RouteNotFound', `no route ${request.method} ${request.url}`),
      ),
    );
    this.app.post('/v1/join', async (request) => {
      const { group, rank } = this.member(request);
      return this.groups.join(group, rank);
    });
    this.app.get('/v1/self', async (request) => {
      const { group, rank } = this.member(request);
      return this.groups.membership(group, rank);
    });
    this.app.get('/v1/peers', async (request, reply) => {
      const { group, rank } = this.member(request);
      const { members } = this.groups.membership(group, rank);
      return reply.type('text/plain').send(members.map((m) => m.address + '\n').join(''));
    });
    this.app.get('/v1/events', async (request, reply) => this.events(request, reply));
  }

  /** Listens on `host:port` once; later calls return the same URL. */
  async listen(host: string, port: number): Promise<string> {
    if (this.url) return this.url;
    await this.app.listen({ host, port });
    // The bound port: `port` 0 picks a free one.
    const bound = (this.app.server.address() as AddressInfo).port;
    this.url = `http://${host}:${bound}`;
    return this.url;
  }

  async close(): Promise<void> {
    this.app.server.closeAllConnections();
    await this.app.close();
  }

  /** Counts a connection against its address; one over the cap is closed at once. */
  private admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const open = this.connections.get(address) ?? 0;
    if (open >= CONNECTIONS_PER_ADDRESS) return void socket.destroy();
    this.connections.set(address, open + 1);
    socket.once('close', () => {
      const left = (this.connections.get(address) ?? 1) - 1;
      if (left > 0) this.connections.set(address, left);
      else this.connections.delete(address);
    });
  }

  private member(request: FastifyRequest): { group: string; rank: number } {
    const address = (request.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const member = this.groups.memberAt(address);
    if (!member)
      throw new PetriError('NotGroupMember', `${address} is not a member of a live group`);
    return member;
  }

  private events(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const { group, rank } = this.member(request);
    const key = `${group}/${rank}`;
    const open = this.streams.get(key) ?? 0;
    if (open >= STREAMS_PER_MEMBER) {
      throw new PetriError(
        'InvalidRequest',
        `at most ${STREAMS_PER_MEMBER} event streams per member`,
      );
    }
    this.streams.set(key, open + 1);
    reply.hijack();
    const { members, size } = this.groups.membership(group, rank);
    writeMembershipStream(reply.raw, {
      first: { type: 'members', group, size, members },
      subscribe: (send, end) => this.groups.subscribe(group, send, end),
      // Its own leave ends its streams: its namespace is gone, nobody would read on.
      endsAfter: (event) => event.type === 'leave' && event.rank === rank,
      onClose: () => {
        const left = (this.streams.get(key) ?? 1) - 1;
        if (left > 0) this.streams.set(key, left);
        else this.streams.delete(key);
      },
    });
    return reply;
  }
}

function sendError(reply: FastifyReply, error: PetriError): FastifyReply {
  return reply.code(error.status).type('application/json').send(error.toBody());
}
