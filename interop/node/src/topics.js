/** The topic tree under a root (spec section 4). */

import { DEVICE_ID, USER_ID } from './schema.js';

/** The topics of one server, under its configured root (default `mq`). */
export class Topics {
  constructor(root = 'mq') {
    this.root = root;
  }

  upstream(user, device) {
    return `${this.root}/up/${user}/${device}`;
  }

  durable(user) {
    return `${this.root}/in/${user}/d`;
  }

  ephemeral(user) {
    return `${this.root}/in/${user}/e`;
  }

  replies(user, device) {
    return `${this.root}/in/${user}/r/${device}`;
  }

  presence(user, device) {
    return `${this.root}/pr/${user}/${device}`;
  }

  presenceOfAllDevices(user) {
    return `${this.root}/pr/${user}/+`;
  }

  profile(user) {
    return `${this.root}/pf/${user}`;
  }

  /**
   * What a topic is: `{ kind, user, device }` with kind `upstream`, `durable`, `ephemeral`,
   * `reply`, `presence` or `profile` (device for per-device topics), or the hub-internal
   * `gateway-in` and `gateway-out` (user: the gateway's name), or null if the topic is not one
   * of the tree's.
   */
  parse(topic) {
    const prefix = `${this.root}/`;
    if (!topic.startsWith(prefix)) return null;
    const levels = topic.slice(prefix.length).split('/');
    if (levels.length === 3 && levels[0] === 'gw' && DEVICE_ID.test(levels[1]) && ['in', 'out'].includes(levels[2])) {
      return { kind: `gateway-${levels[2]}`, user: levels[1], device: null };
    }
    const [head, user, ...rest] = levels;
    if (user === undefined || !USER_ID.test(user)) return null;
    const device = rest.at(-1);
    const isDevice = device !== undefined && DEVICE_ID.test(device);
    if (head === 'up' && rest.length === 1 && isDevice) return { kind: 'upstream', user, device };
    if (head === 'in' && rest.length === 1 && ['d', 'e'].includes(rest[0])) {
      return { kind: rest[0] === 'd' ? 'durable' : 'ephemeral', user, device: null };
    }
    if (head === 'in' && rest.length === 2 && rest[0] === 'r' && isDevice) return { kind: 'reply', user, device };
    if (head === 'pr' && rest.length === 1 && isDevice) return { kind: 'presence', user, device };
    if (head === 'pf' && rest.length === 0) return { kind: 'profile', user, device: null };
    return null;
  }
}
