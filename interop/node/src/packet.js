/**
 * Packets: the envelope (keys 0-7), the packet types of spec section 7 with their body
 * schemas, and the codec between packets, CBOR payloads and the JSON rendering of section 5.
 *
 * Decoding validates what a receiver can check alone: the CBOR shape (error `malformed`) and
 * every known field's type, range and presence, plus the rules that tie fields together
 * (error `invalid`). Unknown body keys and the bodies of unknown types are kept as raw CBOR
 * and encoded back byte for byte.
 */

import * as cbor from './cbor.js';
import { MAX_ID, idFromText, idToText } from './ids.js';
import {
  Bool, COUNT, CONV, Choice, DEVICE_ID, InvalidError, Kind, ListOf, RecordKind, SEQ, TIME, Text, UInt, USER_ID,
  checkNames, decodeFields, encodeFields, field, fieldsFromJson, fieldsToJson, mergeUnknown, unknownFromJson,
  unknownToJson,
} from './schema.js';

/** A payload refused with an error code name of spec section 14. */
export class PacketError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
  }
}

/** Error codes (section 14); a receiver shows an unknown code as `internal`. */
export const ERROR_NAMES = {
  1: 'malformed', 2: 'invalid', 3: 'too-large', 4: 'wrong-topic', 5: 'unsupported', 6: 'no-such-user',
  7: 'forbidden', 8: 'not-found', 9: 'conflict', 10: 'rate-limited', 11: 'internal', 32: 'group-full', 80: 'not-delivered',
};

/** One packet: its type number, envelope, known body fields by name, and kept keys. */
export class Packet {
  constructor(type, { id = null, conv = null, seq = null, ts = null, from = null, device = null, ephemeral = false,
    body = {}, unknown = new Map() } = {}) {
    Object.assign(this, { type, id, conv, seq, ts, from, device, ephemeral, body, unknown });
  }
}

/** A client message id: a BigInt, an integer on the wire, its text form in JSON. */
class MessageIdKind extends UInt {
  constructor() {
    super(1n, MAX_ID);
  }

  check(value) {
    return BigInt(super.check(value));
  }

  toJson(value) {
    return idToText(value);
  }

  fromJson(value) {
    return idFromText(value);
  }
}

/** A packet nested in another (a conversation's last event, history events). */
class PacketKind extends Kind {
  decode(raw) {
    try {
      return decodePacket(raw);
    } catch (e) {
      if (e instanceof PacketError) throw new InvalidError(e.detail);
      throw e;
    }
  }

  encode(value) {
    return encodePacket(value);
  }

  toJson(value) {
    return packetToJson(value);
  }

  fromJson(value) {
    return packetFromJson(value);
  }
}

/** The envelope; each key's JSON name is also the Packet property. */
const ENVELOPE = [
  field(1, 'id', new MessageIdKind()),
  field(2, 'conv', new Text({ pattern: CONV })),
  field(3, 'seq', SEQ),
  field(4, 'ts', TIME),
  field(5, 'from', new Text({ pattern: USER_ID })),
  field(6, 'device', new Text({ pattern: DEVICE_ID })),
  field(7, 'ephemeral', new Bool()),
];

/** What the envelope of an upstream packet needs for its route (section 7). */
export const ROUTE_NEEDS = { event: ['id', 'conv'], marker: ['conv'], signal: ['conv'], request: ['id'], sip: [] };

/** Fields of a `sip` packet that only the hub's gateway link sets (section 7.14). */
export const SIP_GATEWAY_FIELDS = ['peer', 'source', 'destination'];

const oneOf = (...names) => (p) => {
  const present = names.filter((n) => n in p.body);
  return present.length > 1 ? `${present.join(' and ')} exclude each other` : null;
};

function onlyWithNewestFirst(p) {
  const newestFirst = p.body['newest-first'] ?? false;
  if ('after' in p.body && newestFirst) return 'after is only for oldest-first';
  if ('before' in p.body && !newestFirst) return 'before is only for newest-first';
  return null;
}

const directConv = (p) => (p.conv !== null && !USER_ID.test(p.conv) ? 'a contact conversation is between two users' : null);
const groupConv = (p) => (p.conv !== null && !p.conv.startsWith('#') ? 'needs a group conversation' : null);

function adminFields(p) {
  const { action } = p.body;
  if (['invite', 'cancel', 'remove', 'role', 'transfer'].includes(action) && !('user' in p.body)) return `${action} needs a user`;
  if (action === 'role' && !['member', 'admin'].includes(p.body.role)) return 'role needs the role member or admin';
  return null;
}

const base64urlOf = (text, size) =>
  /^[A-Za-z0-9_-]*=*$/.test(text) && text.replace(/=+$/, '').length === Math.ceil((size * 4) / 3);

function pushTarget(p) {
  const { provider, address } = p.body;
  if (provider === 'web-push') {
    const rest = address.startsWith('https://') ? address.slice(8) : null;
    if (!rest || rest.startsWith('/')) return 'address must be an https URL';
  } else if (provider === 'unified-push') {
    const rest = address.replace(/^https?:\/\//, '');
    if (rest === address || !rest || rest.startsWith('/')) return 'address must be an http(s) URL';
  } else if (!address || /[\s\x00-\x1f]/.test(address)) {
    return 'address must be a token without spaces';
  }
  if (provider === 'web-push') {
    if (!base64urlOf(p.body.p256dh ?? '', 65)) return 'p256dh must be a P-256 public key (65 bytes, base64url)';
    if (!base64urlOf(p.body.auth ?? '', 16)) return 'auth must be a 16-byte secret (base64url)';
  }
  for (const [name, allowed] of [['topic', 'apns'], ['sandbox', 'apns'], ['p256dh', 'web-push'], ['auth', 'web-push']]) {
    if (name in p.body && provider !== allowed) return `${name} does not apply to ${provider}`;
  }
  return null;
}

const needsConv = (p) => (p.conv === null ? 'conv is required' : null);

const STATE = new Choice(['active', 'composing', 'paused', 'inactive', 'gone']);
const ACTION = new Choice(['request', 'accept', 'decline', 'cancel', 'remove']);
const AVAILABILITY = new Choice(['offline', 'available', 'away', 'busy']);
const CONTACT_STATE = new Choice(['none', 'outgoing', 'incoming', 'accepted']);
const LIMIT = new UInt(1n, 500n);
const ROLE = new Choice(['member', 'admin', 'owner']);
const HISTORY_SETTING = new Choice(['joined', 'all']);
const GROUP_NAME = new Text({ maxBytes: 128, minBytes: 1 });
const GROUP_EVENT_ACTION = new Choice([
  'created', 'invited', 'joined', 'declined', 'cancelled', 'left', 'removed', 'role', 'updated', 'deleted', 'owner',
]);
const GROUP_ADMIN_ACTION = new Choice(['invite', 'cancel', 'remove', 'role', 'transfer', 'update', 'delete']);
const GROUP_JOIN_ACTION = new Choice(['accept', 'decline', 'leave']);
const USERS = (max) => new ListOf(new Text({ pattern: USER_ID }), max);
const text = (maxBytes) => new Text({ maxBytes });

const CONVERSATION = [
  field(2, 'conv', new Text({ pattern: CONV }), true),
  field(3, 'last-seq', COUNT),
  field(4, 'last-ts', TIME),
  field(8, 'change', COUNT, true),
  field(9, 'last', new PacketKind()),
  field(10, 'unread', COUNT),
  field(11, 'delivered', COUNT),
  field(12, 'read', COUNT),
  field(13, 'peer-delivered', COUNT),
  field(14, 'peer-read', COUNT),
  field(15, 'first-seq', COUNT),
  field(16, 'contact', CONTACT_STATE),
  field(17, 'muted-until', COUNT),
];

const MEMBER = [
  field(9, 'user', new Text({ pattern: USER_ID }), true),
  field(10, 'role', ROLE, true),
  field(11, 'invited', new Bool()),
  field(12, 'since', COUNT),
  field(13, 'delivered', COUNT),
  field(14, 'read', COUNT),
];

const DEVICE = [
  field(8, 'device-id', new Text({ pattern: DEVICE_ID }), true),
  field(9, 'created', TIME, true),
  field(10, 'last-login', TIME),
  field(11, 'token', new Bool()),
];

const GROUP_CHANGES = [
  field(9, 'user', new Text({ pattern: USER_ID })),
  field(10, 'role', ROLE),
  field(11, 'name', GROUP_NAME),
  field(12, 'avatar', text(512)),
  field(13, 'description', text(1024)),
  field(14, 'history', HISTORY_SETTING),
];

const type = (number, name, route, body, { needs = [], rules = [] } = {}) => ({ number, name, route, body, needs, rules });

/** The known packet types by number: name, route (section 7), body schema, extra rules. */
export const TYPES = new Map([
  type(1, 'message', 'event', [
    field(8, 'text', text(16384), true), field(9, 'reply-to', SEQ), field(10, 'mentions', USERS(64)),
  ]),
  type(2, 'chat-state', 'signal', [field(8, 'state', STATE, true)]),
  type(3, 'delivered', 'marker', [field(8, 'up-to', SEQ, true)]),
  type(4, 'read', 'marker', [field(8, 'up-to', SEQ, true), field(9, 'private', new Bool())]),
  type(5, 'contact', 'event', [field(8, 'action', ACTION, true), field(9, 'note', text(512))], { rules: [directConv] }),
  type(6, 'presence', 'presence', [
    field(8, 'availability', AVAILABILITY, true), field(9, 'status', text(256)), field(10, 'last-active', TIME),
  ]),
  type(7, 'profile', 'request', [field(8, 'name', text(128)), field(9, 'avatar', text(512)), field(10, 'status', text(256))]),
  type(8, 'ack', 'reply', [field(8, 'duplicate', new Bool())]),
  type(9, 'error', 'reply', [field(8, 'code', new UInt(1n, 65535n), true), field(9, 'detail', text(512)), field(10, 'about', new UInt())]),
  type(10, 'sync', 'request', [
    field(8, 'after', COUNT), field(9, 'before', COUNT), field(10, 'limit', LIMIT), field(11, 'newest-first', new Bool()),
  ], { rules: [onlyWithNewestFirst] }),
  type(11, 'sync-result', 'reply', [
    field(8, 'conversations', new ListOf(new RecordKind(CONVERSATION), 500), true), field(9, 'more', new Bool()),
    field(10, 'token', COUNT, true),
  ]),
  type(12, 'history', 'request', [
    field(8, 'after', COUNT), field(9, 'before', SEQ), field(10, 'limit', LIMIT), field(11, 'since', TIME),
  ], { needs: ['conv'], rules: [oneOf('after', 'before', 'since')] }),
  type(13, 'history-result', 'reply', [
    field(8, 'events', new ListOf(new PacketKind(), 500), true), field(9, 'more', new Bool()),
    field(10, 'first-seq', COUNT), field(11, 'last-seq', COUNT), field(12, 'truncated', new Bool()),
  ]),
  type(32, 'group-create', 'request', [
    field(8, 'name', GROUP_NAME, true), field(9, 'avatar', text(512)), field(10, 'description', text(1024)),
    field(11, 'invite', USERS(256)), field(12, 'history', HISTORY_SETTING),
  ]),
  type(33, 'group-event', 'hub', [field(8, 'action', GROUP_EVENT_ACTION, true), ...GROUP_CHANGES], { rules: [groupConv] }),
  type(34, 'group-admin', 'request', [field(8, 'action', GROUP_ADMIN_ACTION, true), ...GROUP_CHANGES], {
    needs: ['conv'], rules: [groupConv, adminFields],
  }),
  type(35, 'group-join', 'request', [field(8, 'action', GROUP_JOIN_ACTION, true)], { needs: ['conv'], rules: [groupConv] }),
  type(36, 'group-info', 'request', [], { needs: ['conv'], rules: [groupConv] }),
  type(37, 'group-info-result', 'reply', [
    field(8, 'name', new Text(), true), field(9, 'avatar', new Text()), field(10, 'description', new Text()),
    field(11, 'history', HISTORY_SETTING), field(12, 'members', new ListOf(new RecordKind(MEMBER)), true),
  ], { rules: [groupConv] }),
  type(64, 'device-list', 'request', []),
  type(65, 'device-list-result', 'reply', [field(8, 'devices', new ListOf(new RecordKind(DEVICE), 256), true)]),
  type(66, 'device-revoke', 'request', [field(8, 'device-id', new Text({ pattern: DEVICE_ID }), true)]),
  type(67, 'client-state', 'request', [field(8, 'active', new Bool(), true)]),
  type(68, 'push-register', 'request', [
    field(8, 'provider', new Choice(['fcm', 'apns', 'web-push', 'unified-push']), true), field(9, 'address', text(4096), true),
    field(10, 'topic', text(256)), field(11, 'sandbox', new Bool()), field(12, 'p256dh', text(128)), field(13, 'auth', text(64)),
    field(14, 'preview', new Bool()),
  ], { rules: [pushTarget] }),
  type(69, 'push-unregister', 'request', []),
  type(70, 'mute', 'request', [field(8, 'until', TIME, true)], { rules: [needsConv] }),
  type(80, 'sip', 'sip', [
    field(8, 'message', text(32768), true), field(9, 'peer', text(64)), field(10, 'source', text(128)),
    field(11, 'destination', text(128)),
  ], { rules: [(p) => (p.body.message === '' ? 'the SIP message must not be empty' : null)] }),
  type(81, 'call', 'hub', [
    field(8, 'call-id', text(256), true),
    field(9, 'outcome', new Choice(['answered', 'missed', 'declined', 'busy', 'cancelled', 'failed']), true),
    field(10, 'started', TIME, true), field(11, 'answered', TIME), field(12, 'ended', TIME, true), field(13, 'duration', TIME),
    field(14, 'answered-by', new Text({ pattern: DEVICE_ID })), field(15, 'media', new ListOf(text(32), 8)),
  ]),
].map((t) => [t.number, t]));

export const TYPE_NUMBERS = Object.fromEntries([...TYPES.values()].map((t) => [t.name, t.number]));
const TYPE_KIND = new UInt();

const bodySchema = (typeNumber) => TYPES.get(typeNumber)?.body ?? [];

function checkRules(p) {
  for (const rule of TYPES.get(p.type)?.rules ?? []) {
    const problem = rule(p);
    if (problem) throw new InvalidError(problem);
  }
}

/** Decodes and validates a payload; throws PacketError (`malformed` or `invalid`). */
export function decodePacket(payload) {
  let entries;
  try {
    entries = cbor.splitMap(payload);
  } catch (e) {
    if (e instanceof cbor.MalformedError) throw new PacketError('malformed', e.message);
    throw e;
  }
  if (!entries.has(0)) throw new PacketError('malformed', 'no type (key 0)');
  try {
    const p = new Packet(TYPE_KIND.decode(entries.get(0)));
    entries.delete(0);
    for (const f of ENVELOPE) {
      if (entries.has(f.key)) {
        p[f.name] = f.kind.decode(entries.get(f.key));
        entries.delete(f.key);
      }
    }
    [p.body, p.unknown] = decodeFields(entries, bodySchema(p.type));
    checkRules(p);
    return p;
  } catch (e) {
    if (e instanceof InvalidError) throw new PacketError('invalid', e.message);
    throw e;
  }
}

/** Encodes a packet deterministically; throws InvalidError if a field is out of range. */
export function encodePacket(p) {
  const entries = new Map([[0, TYPE_KIND.encode(p.type)]]);
  for (const f of ENVELOPE) {
    const value = p[f.name];
    if (value !== null && value !== false) entries.set(f.key, f.kind.encode(value)); // ephemeral only when true
  }
  if ([...p.unknown.keys()].some((k) => k < 8)) throw new InvalidError('keys 0-7 are the envelope, never unknown');
  const body = encodeFields(p.body, bodySchema(p.type));
  checkRules(p);
  return cbor.encodeMap(new Map([...entries, ...mergeUnknown(body, p.unknown)]));
}

export const typeName = (typeNumber) => TYPES.get(typeNumber)?.name ?? typeNumber;

/** The JSON rendering: names for the envelope, body and choices, raw hex for unknowns. */
export function packetToJson(p) {
  const out = { type: typeName(p.type) };
  for (const f of ENVELOPE) {
    const value = p[f.name];
    if (value !== null && value !== false) out[f.name] = f.kind.toJson(value);
  }
  Object.assign(out, fieldsToJson(p.body, bodySchema(p.type)));
  if (p.unknown.size > 0) out.unknown = unknownToJson(p.unknown);
  return out;
}

/** The packet a JSON rendering stands for. */
export function packetFromJson(obj) {
  const p = new Packet(typeof obj.type === 'string' ? TYPE_NUMBERS[obj.type] : obj.type);
  if (p.type === undefined) throw new InvalidError(`unknown type name ${obj.type}`);
  const schema = bodySchema(p.type);
  checkNames(obj, schema, ['type', 'unknown', ...ENVELOPE.map((f) => f.name)]);
  for (const f of ENVELOPE) if (f.name in obj) p[f.name] = f.kind.fromJson(obj[f.name]);
  p.body = fieldsFromJson(obj, schema);
  p.unknown = unknownFromJson(obj.unknown);
  return p;
}
