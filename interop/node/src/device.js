/**
 * A device: one MQTT connection of a user, on MQTT.js (spec sections 3, 4 and 9-13).
 *
 * It connects as `{user}:{device}` with a persistent session and the offline presence as its
 * will, subscribes to its inbox topics when the broker kept no session, publishes its
 * presence, and records every packet it receives in `received` (an EventLog to wait on, kept
 * for the device's lifetime; each is also emitted as a `received` event). Requests (profile,
 * sync, history, groups) are answered on the reply topic and matched by id; an event is
 * "sent" when its copy, with this device's name and the event's id, arrives on the user's
 * durable inbox (or an `ack` marks it a duplicate).
 */

import { EventEmitter } from 'node:events';

import mqtt from 'mqtt';

import { IdGenerator, idToText } from './ids.js';
import { ERROR_NAMES, Packet, PacketError, TYPE_NUMBERS, decodePacket, encodePacket } from './packet.js';
import { Topics } from './topics.js';
import { EventLog } from './waiting.js';

const SESSION_EXPIRY_SECS = 604800;
const WILL = Buffer.from('a200060800', 'hex'); // presence {0: 6, 8: 0}: offline, without time
export const TIMEOUT_MS = 10000;

/** The hub answered with an error packet (section 14). */
export class Refused extends Error {
  constructor(error) {
    const code = ERROR_NAMES[error.body.code] ?? 'internal';
    super(`refused: ${code} (${error.body.detail ?? ''})`);
    this.error = error;
    this.code = code;
  }
}

const present = (values) => Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined && v !== null));

export class Device extends EventEmitter {
  #watched = {}; // extra subscriptions (presence, profiles): topic -> { qos }

  // Contact requests not yet answered, by peer: 'out' (this user asked) or 'in' (the peer
  // asked), to know when a request crosses one and makes them contacts.
  #asked = new Map();

  #connections = new EventLog();

  #client = null;

  /**
   * `server`: mqtt://host:port or ws://host:port/path; `protocolVersion`: 5 or 4 (3.1.1).
   */
  constructor({ server, user, device, password, root = 'mq', protocolVersion = 5, ids = new IdGenerator() }) {
    super();
    Object.assign(this, { server, user, device, password, protocolVersion, ids });
    this.topics = new Topics(root);
    this.received = new EventLog();
  }

  // Connection (sections 3 and 13).

  /**
   * Connects, subscribes if the broker kept no session, publishes the presence; resolves
   * with whether the broker had kept a session. Rejects if the broker refuses.
   */
  async connect(timeoutMs = TIMEOUT_MS) {
    const start = this.#connections.items.length;
    this.#client = mqtt.connect(this.server, {
      clientId: `${this.user}:${this.device}`,
      username: this.user,
      password: this.password,
      protocolVersion: this.protocolVersion,
      clean: false,
      properties: this.protocolVersion === 5 ? { sessionExpiryInterval: SESSION_EXPIRY_SECS } : undefined,
      will: { topic: this.topics.presence(this.user, this.device), payload: WILL, qos: 1, retain: true },
      keepalive: 60,
      reconnectPeriod: 1000,
      resubscribe: false, // section 13: subscribe again only when the broker kept no session
      connectTimeout: timeoutMs,
    });
    this.#client.on('connect', (connack) => this.#onConnect(connack));
    this.#client.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet.retain));
    this.#client.on('error', (error) => this.#connections.append({ error }));
    const first = await this.#connections.waitFor(() => true, timeoutMs, 'CONNACK', start);
    if (first.error) {
      this.#client.end(true);
      throw first.error;
    }
    return first.sessionPresent;
  }

  async #onConnect(connack) {
    try {
      if (!connack.sessionPresent) {
        await this.#client.subscribeAsync({
          [this.topics.durable(this.user)]: { qos: 1 },
          [this.topics.replies(this.user, this.device)]: { qos: 1 },
          [this.topics.ephemeral(this.user)]: { qos: 0 },
          ...this.#watched,
        });
      }
      await this.setPresence('available');
      this.#connections.append({ sessionPresent: connack.sessionPresent });
    } catch (error) {
      this.#connections.append({ error });
    }
  }

  /**
   * Leaves on purpose: publishes `offline` with `last-active` (no will is sent after a clean
   * DISCONNECT), then disconnects. The broker keeps the session.
   */
  async disconnect() {
    await this.setPresence('offline');
    await this.#client.endAsync();
  }

  // Subscriptions (sections 4 and 10).

  async #watch(topic, qos) {
    try {
      await this.#client.subscribeAsync(topic, { qos });
    } catch (error) {
      if (error.packet?.granted?.some((code) => code >= 0x80)) return false; // refused in the SUBACK
      throw error;
    }
    this.#watched[topic] = { qos };
    return true;
  }

  /**
   * Subscribes (QoS 0) to the presence of every device of `user`: allowed for the user
   * themself and accepted contacts. Resolves with whether the broker granted it.
   */
  watchPresence(user) {
    return this.#watch(this.topics.presenceOfAllDevices(user), 0);
  }

  /** Subscribes to `user`'s retained profile. */
  watchProfile(user) {
    return this.#watch(this.topics.profile(user), 1);
  }

  // Receiving.

  #onMessage(topic, payload, retain) {
    const place = this.topics.parse(topic);
    if (!place) return;
    let packet = null;
    let problem = null;
    if (payload.length === 0) {
      problem = 'cleared';
    } else {
      try {
        packet = decodePacket(new Uint8Array(payload));
      } catch (error) {
        if (!(error instanceof PacketError)) throw error;
        problem = error.message;
      }
    }
    if (packet && place.kind === 'durable' && packet.type === TYPE_NUMBERS.contact) this.#followContact(packet);
    const incoming = { place, packet, retain, problem };
    this.received.append(incoming);
    this.emit('received', incoming);
  }

  /**
   * Keeps the presence subscriptions with the contacts (spec 4): subscribes when a `contact`
   * event makes the peer a contact, unsubscribes when one removes them. It asks and does not
   * wait for the SUBACK (it runs on a message).
   */
  #followContact(packet) {
    const peer = packet.conv;
    const action = packet.body.action;
    if (typeof peer !== 'string' || peer.startsWith('#') || peer.startsWith('sip:')) return;
    const mine = packet.from === this.user;
    const accepted = action === 'accept' || (action === 'request' && this.#asked.get(peer) === (mine ? 'in' : 'out'));
    if (action === 'request' && !accepted) {
      this.#asked.set(peer, mine ? 'out' : 'in');
      return;
    }
    this.#asked.delete(peer);
    const topic = this.topics.presenceOfAllDevices(peer);
    if (accepted) {
      this.#watched[topic] = { qos: 0 };
      this.#client.subscribe(topic, { qos: 0 });
    } else if (action === 'remove' && topic in this.#watched) {
      delete this.#watched[topic];
      this.#client.unsubscribe(topic);
    }
  }

  // Sending (sections 7 and 9).

  /** Publishes a payload as it is on this device's upstream topic; resolves on PUBACK. */
  publishUpstream(payload, qos = 1) {
    return this.#client.publishAsync(this.topics.upstream(this.user, this.device), Buffer.from(payload), { qos });
  }

  /** Sends a packet to the hub: QoS 0 for chat states, QoS 1 for everything else. */
  send(packet) {
    return this.publishUpstream(encodePacket(packet), packet.type === TYPE_NUMBERS['chat-state'] ? 0 : 1);
  }

  async #event(typeName, conv, body, unknown = new Map()) {
    const packet = new Packet(TYPE_NUMBERS[typeName], { id: this.ids.next(), conv, body, unknown });
    await this.send(packet);
    return packet.id;
  }

  /** Sends a message; resolves with its id (see waitSent). `unknown`: extra body keys. */
  sendMessage(conv, text, { replyTo, mentions, unknown } = {}) {
    return this.#event('message', conv, present({ text, 'reply-to': replyTo, mentions }), unknown);
  }

  /** A contact action (request, accept, decline, cancel, remove); resolves with its id. */
  sendContact(conv, action, note) {
    return this.#event('contact', conv, present({ action, note }));
  }

  sendChatState(conv, state) {
    return this.send(new Packet(TYPE_NUMBERS['chat-state'], { conv, body: { state } }));
  }

  sendDelivered(conv, upTo) {
    return this.send(new Packet(TYPE_NUMBERS.delivered, { conv, body: { 'up-to': upTo } }));
  }

  sendRead(conv, upTo, isPrivate = false) {
    return this.send(new Packet(TYPE_NUMBERS.read, { conv, body: present({ 'up-to': upTo, private: isPrivate || null }) }));
  }

  /**
   * Publishes this device's presence, retained, with the time (and `last-active` when going
   * offline).
   */
  setPresence(availability, status) {
    const now = Date.now();
    const lastActive = availability === 'offline' ? now : null;
    const body = present({ availability, status, 'last-active': lastActive });
    const payload = encodePacket(new Packet(TYPE_NUMBERS.presence, { ts: now, body }));
    return this.#client.publishAsync(this.topics.presence(this.user, this.device), Buffer.from(payload), { qos: 1, retain: true });
  }

  /**
   * Waits until the hub stored the event `id`: resolves with its own copy from the durable
   * inbox (with `seq`), or the `ack` of a duplicate. Rejects with Refused on an error.
   */
  async waitSent(id, timeoutMs = TIMEOUT_MS) {
    const match = ({ place, packet }) => packet?.id === id && (place.kind === 'reply'
      || (place.kind === 'durable' && packet.from === this.user && packet.device === this.device));
    const { packet } = await this.received.waitFor(match, timeoutMs, `confirmation of ${idToText(id)}`);
    if (packet.type === TYPE_NUMBERS.error) throw new Refused(packet);
    return packet;
  }

  // Requests (sections 7.6, 7.9, 7.10, 7.11, 11).

  /**
   * Sends a request (a new id is given if it has none) and resolves with the reply with its
   * id; rejects with Refused on an error reply. Replies to other ids are left alone.
   */
  async request(packet, timeoutMs = TIMEOUT_MS) {
    packet.id ??= this.ids.next();
    await this.send(packet);
    const match = ({ place, packet: reply }) => place.kind === 'reply' && reply?.id === packet.id;
    const { packet: answer } = await this.received.waitFor(match, timeoutMs, `reply to ${idToText(packet.id)}`);
    if (answer.type === TYPE_NUMBERS.error) throw new Refused(answer);
    return answer;
  }

  /**
   * Changes the profile (name, avatar, status; "" clears); resolves with the hub's ack,
   * whose `seq` is the profile's new version.
   */
  setProfile(fields) {
    return this.request(new Packet(TYPE_NUMBERS.profile, { body: present(fields) }));
  }

  /** One page of the conversations that changed (section 11); a `sync-result`. */
  sync({ after, before, limit, newestFirst } = {}) {
    const body = present({ after, before, limit, 'newest-first': newestFirst || null });
    return this.request(new Packet(TYPE_NUMBERS.sync, { body }));
  }

  /** One page of a conversation's events, ascending (section 11); a `history-result`. */
  history(conv, { after, before, since, limit } = {}) {
    return this.request(new Packet(TYPE_NUMBERS.history, { conv, body: present({ after, before, since, limit }) }));
  }

  // Groups (section 7.11). Each request resolves with an `ack` (carrying the group's `conv`
  // and the `seq` of the group-event it produced) or rejects with Refused.

  /**
   * Creates a group (this user is its owner), inviting `invite` at once; resolves with the
   * ack, whose `conv` is the new group (`#...`) and `seq` that of its `created` event.
   */
  createGroup(name, { invite, avatar, description, history } = {}) {
    const body = present({ name, invite, avatar, description, history });
    return this.request(new Packet(TYPE_NUMBERS['group-create'], { body }));
  }

  /**
   * An admin action (invite, cancel, remove, role, transfer, update, delete) on `group`;
   * `name`, `avatar`, `description`, `history` for update. Resolves with the ack.
   */
  groupAdmin(group, action, { user, role, name, avatar, description, history } = {}) {
    const body = present({ action, user, role, name, avatar, description, history });
    return this.request(new Packet(TYPE_NUMBERS['group-admin'], { conv: group, body }));
  }

  /** Answers an invitation (accept, decline) or leaves (leave); resolves with the ack. */
  groupJoin(group, action) {
    return this.request(new Packet(TYPE_NUMBERS['group-join'], { conv: group, body: { action } }));
  }

  /** The group's profile, members, roles and markers: a `group-info-result`. */
  groupInfo(group) {
    return this.request(new Packet(TYPE_NUMBERS['group-info'], { conv: group }));
  }
}
