/**
 * The hub's edge check of an upstream PUBLISH (spec section 8, steps 1-2), as far as it
 * depends on the packet alone: topic, size, decoding, schema, route and envelope.
 *
 * Clients use it to know what the hub will refuse; the test vectors' `invalid/` files name
 * the error this check must produce.
 */

import { MAX_NESTING, MalformedError, deterministic, splitMap } from './cbor.js';
import { PacketError, ROUTE_NEEDS, SIP_GATEWAY_FIELDS, TYPES, decodePacket } from './packet.js';

export const DEFAULT_MAX_PAYLOAD = 65536;

/** Packet types below this number are the protocol's own; an unknown one is reserved. */
const FIRST_EXTENSION = 128;

/**
 * Returns `{ packet, route }` (route `event`, `marker`, `signal`, `request` or `sip`), or throws
 * PacketError with the code the hub answers.
 */
export function checkUpstream(topics, topic, payload, maxPayload = DEFAULT_MAX_PAYLOAD) {
  if (topics.parse(topic)?.kind !== 'upstream') throw new PacketError('wrong-topic', `${topic} is not an upstream topic`);
  if (payload.length > maxPayload) throw new PacketError('too-large', `${payload.length} bytes, the maximum is ${maxPayload}`);
  try {
    // The hub walks every value: nesting, a key twice in any map (section 5).
    for (const value of splitMap(payload).values()) deterministic(value, MAX_NESTING);
  } catch (e) {
    if (e instanceof MalformedError) throw new PacketError('malformed', e.message);
    throw e;
  }
  const packet = decodePacket(payload);
  const known = TYPES.get(packet.type);
  let route;
  let needs;
  if (known) {
    if (!(known.route in ROUTE_NEEDS)) throw new PacketError('wrong-topic', `${known.name} cannot be sent upstream`);
    route = known.route;
    needs = [...ROUTE_NEEDS[route], ...known.needs];
  } else {
    // Types below 128 are the protocol's own: an unknown one is reserved (spec 15).
    if (packet.type < FIRST_EXTENSION) throw new PacketError('unsupported', `type ${packet.type} is reserved`);
    if (packet.conv === null) throw new PacketError('unsupported', `unknown type ${packet.type} without a conversation`);
    route = packet.ephemeral ? 'signal' : 'event';
    needs = ROUTE_NEEDS[route];
  }
  const missing = needs.filter((name) => packet[name] === null);
  if (missing.length > 0) throw new PacketError('invalid', `a ${route} needs ${missing.join(' and ')}`);
  const forged = route === 'sip' ? SIP_GATEWAY_FIELDS.filter((name) => name in packet.body) : [];
  if (forged.length > 0) throw new PacketError('invalid', `${forged.join(' and ')} of a sip packet are set by the gateway only`);
  return { packet, route };
}
