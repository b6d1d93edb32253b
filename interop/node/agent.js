/**
 * A Node device driven over standard input and output, so that the scenario suite (in Python)
 * can make it act and see what it receives.
 *
 *   node agent.js --server URL --user U --device D --password P [--mqtt 5|4] [--root mq]
 *
 * It connects, then prints one JSON line per event: `{"event": "connected", "session-present"}`
 * (or `{"event": "failed", "error"}`, and exits with 1, if the broker refused it), then
 * `{"event": "received", "kind", "user", "device", "retain", "packet", "problem"}` (packets in
 * the JSON rendering of spec section 5). It reads one JSON command per line,
 * `{"n": 1, "cmd": "message", "args": {...}}`, and answers `{"n": 1, "ok": true, "result": ...}`
 * or `{"n": 1, "ok": false, "error": "...", "code": "forbidden"}`. Ids are in their text form.
 */

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { Device, Refused } from './src/device.js';
import { idFromText, idToText } from './src/ids.js';
import { packetToJson } from './src/packet.js';
import { unknownFromJson } from './src/schema.js';

const { values: options } = parseArgs({
  options: {
    server: { type: 'string' },
    user: { type: 'string' },
    device: { type: 'string' },
    password: { type: 'string' },
    mqtt: { type: 'string', default: '5' },
    root: { type: 'string', default: 'mq' },
  },
});

const print = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const device = new Device({
  server: options.server,
  user: options.user,
  device: options.device,
  password: options.password,
  root: options.root,
  protocolVersion: Number(options.mqtt),
});

device.on('received', ({ place, packet, retain, problem }) => {
  print({ event: 'received', ...place, retain, packet: packet && packetToJson(packet), problem });
});

const commands = {
  message: async ({ conv, text, replyTo, mentions, unknown }) => ({
    id: idToText(await device.sendMessage(conv, text, { replyTo, mentions, unknown: unknownFromJson(unknown) })),
  }),
  sent: async ({ id }) => packetToJson(await device.waitSent(idFromText(id))),
  contact: async ({ conv, action, note }) => ({ id: idToText(await device.sendContact(conv, action, note)) }),
  chatState: async ({ conv, state }) => {
    await device.sendChatState(conv, state);
  },
  delivered: async ({ conv, upTo }) => {
    await device.sendDelivered(conv, upTo);
  },
  read: async ({ conv, upTo, private: isPrivate }) => {
    await device.sendRead(conv, upTo, isPrivate);
  },
  presence: async ({ availability, status }) => {
    await device.setPresence(availability, status);
  },
  profile: async (fields) => packetToJson(await device.setProfile(fields)),
  sync: async (args) => packetToJson(await device.sync(args)),
  history: async ({ conv, ...args }) => packetToJson(await device.history(conv, args)),
  createGroup: async ({ name, ...options }) => packetToJson(await device.createGroup(name, options)),
  groupAdmin: async ({ group, action, ...options }) => packetToJson(await device.groupAdmin(group, action, options)),
  groupJoin: async ({ group, action }) => packetToJson(await device.groupJoin(group, action)),
  groupInfo: async ({ group }) => packetToJson(await device.groupInfo(group)),
  watchPresence: async ({ user }) => ({ granted: await device.watchPresence(user) }),
  watchProfile: async ({ user }) => ({ granted: await device.watchProfile(user) }),
  disconnect: async () => {
    await device.disconnect();
  },
};

async function run({ n, cmd, args = {} }) {
  try {
    if (!(cmd in commands)) throw new Error(`unknown command ${cmd}`);
    const result = await commands[cmd](args);
    print({ n, ok: true, result: result ?? null });
  } catch (error) {
    print({ n, ok: false, error: error.message, code: error instanceof Refused ? error.code : null });
  }
}

try {
  print({ event: 'connected', 'session-present': await device.connect() });
} catch (error) {
  print({ event: 'failed', error: error.message });
  process.exit(1);
}

// Commands run concurrently; at the end of the input, the agent exits once they are done.
const running = new Set();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = run(JSON.parse(line));
  running.add(command);
  command.finally(() => running.delete(command));
});
lines.on('close', async () => {
  await Promise.allSettled(running);
  process.exit(0);
});
