"""A device: one MQTT connection of a user, on paho-mqtt (spec sections 3, 4 and 9-13).

It connects as `{user}:{device}` with a persistent session and the offline presence as its
will, subscribes to its inbox topics when the broker kept no session, publishes its presence,
and records every packet it receives in `received`, an EventLog to wait on (kept for the
device's lifetime). Requests (profile, sync, history, groups) are answered on the reply topic and
matched by id; an event is "sent" when its copy, with this device's name and the event's id,
arrives on the user's durable inbox (or an `ack` marks it a duplicate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .ids import IdGenerator, id_to_text
from .packet import ERROR_NAMES, TYPE_NUMBERS, Packet, PacketError, decode_packet, encode_packet
from .topics import Place, Topics
from .waiting import EventLog

SESSION_EXPIRY_SECS = 604800
WILL = bytes.fromhex("a200060800")  # presence {0: 6, 8: 0}: offline, without time
TIMEOUT = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Incoming:
    """A PUBLISH this device received: where, the packet (None if the payload was empty,
    i.e. a retained message cleared, or did not decode: `problem` says why), and whether it
    was a retained message."""

    place: Place
    packet: Packet | None
    retain: bool
    problem: str | None = None

    def is_packet(self, kind: str, type_name: str) -> bool:
        return self.place.kind == kind and self.packet is not None and self.packet.type == TYPE_NUMBERS[type_name]


class Refused(Exception):
    """The hub answered with an error packet (section 14)."""

    def __init__(self, error: Packet) -> None:
        self.error = error
        self.code = ERROR_NAMES.get(error.body["code"], "internal")
        super().__init__(f"refused: {self.code} ({error.body.get('detail', '')})")


@dataclass(frozen=True)
class _ConnAck:
    reason: str
    refused: bool
    session_present: bool
    subscription_mid: int | None


class Device:
    """One device of a user. `server` is `mqtt://host:port`, or `mqtts://host:port` for MQTT
    over TLS (the server's certificate checked against `ca_file`, or the system's roots);
    `mqtt_version` 5 or 4 (3.1.1)."""

    def __init__(
        self,
        server: str,
        user: str,
        device: str,
        password: str,
        *,
        root: str = "mq",
        mqtt_version: int = 5,
        ids: IdGenerator | None = None,
        ca_file: str | None = None,
    ) -> None:
        url = urlsplit(server)
        if url.scheme not in ("mqtt", "mqtts") or url.hostname is None or url.port is None:
            raise ValueError(f"{server}: expected mqtt://host:port or mqtts://host:port")
        self.user, self.device = user, device
        self.topics = Topics(root)
        self.ids = ids or IdGenerator()
        self.received: EventLog[Incoming] = EventLog()
        self._host, self._port = url.hostname, url.port
        self._v5 = mqtt_version == 5
        self._watched: dict[str, int] = {}  # extra subscriptions (presence, profiles): topic -> QoS
        # Contact requests not yet answered, by peer: "out" (this user asked) or "in" (the
        # peer asked), to know when a request crosses one and makes them contacts.
        self._asked: dict[str, str] = {}
        self._connacks: EventLog[_ConnAck] = EventLog()
        self._subacks: EventLog[tuple[int, list[Any]]] = EventLog()

        protocol = mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{user}:{device}",
            clean_session=None if self._v5 else False,
            protocol=protocol,
        )
        if url.scheme == "mqtts":
            # Python's defaults: the certificate and the host name checked, TLS 1.2 or later
            # (what the spec's section 16 asks of clients).
            self._client.tls_set(ca_certs=ca_file)
        self._client.username_pw_set(user, password)
        self._client.will_set(self.topics.presence(user, device), WILL, qos=1, retain=True)
        self._client.reconnect_delay_set(1, 5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # Connection (sections 3 and 13).

    def connect(self, timeout: float = TIMEOUT) -> bool:
        """Connects, subscribes if the broker kept no session, publishes the presence;
        returns whether the broker had kept a session. Raises ConnectionRefusedError."""
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_SECS
            clean_start: Any = False
        else:
            clean_start = mqtt.MQTT_CLEAN_START_FIRST_ONLY  # ignored by 3.1.1: clean_session is False
        start = len(self._connacks)
        self._client.connect(self._host, self._port, keepalive=60, clean_start=clean_start, properties=properties)
        self._client.loop_start()
        ack = self._connacks.wait_for(lambda _: True, timeout, "CONNACK", start)
        if ack.refused:
            self._client.loop_stop()
            raise ConnectionRefusedError(ack.reason)
        if ack.subscription_mid is not None:
            self._wait_subscribed(ack.subscription_mid, timeout)
        return ack.session_present

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self._connacks.append(_ConnAck(str(reason), True, False, None))
            return
        mid = None
        if not flags.session_present:
            wanted = {
                self.topics.durable(self.user): 1,
                self.topics.replies(self.user, self.device): 1,
                self.topics.ephemeral(self.user): 0,
                **self._watched,
            }
            _, mid = client.subscribe(list(wanted.items()))
        self.set_presence("available")
        self._connacks.append(_ConnAck(str(reason), False, flags.session_present, mid))

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def disconnect(self, timeout: float = TIMEOUT) -> None:
        """Leaves on purpose: publishes `offline` with `last-active` (no will is sent after a
        clean DISCONNECT), then disconnects. The broker keeps the session."""
        self.set_presence("offline").wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    # Subscriptions (sections 4 and 10).

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, reasons: list[Any], _properties: Any) -> None:
        self._subacks.append((mid, reasons))

    def _wait_subscribed(self, mid: int, timeout: float) -> list[bool]:
        _, reasons = self._subacks.wait_for(lambda s: s[0] == mid, timeout, f"SUBACK {mid}")
        return [not r.is_failure for r in reasons]

    def _watch(self, topic: str, qos: int, timeout: float) -> bool:
        result, mid = self._client.subscribe(topic, qos)
        if mid is None:
            raise ConnectionError(f"cannot subscribe to {topic}: {result}")
        granted = self._wait_subscribed(mid, timeout)[0]
        if granted:
            self._watched[topic] = qos
        return granted

    def watch_presence(self, user: str, timeout: float = TIMEOUT) -> bool:
        """Subscribes (QoS 0) to the presence of every device of `user`: allowed for the user
        themself and accepted contacts. Returns whether the broker granted it."""
        return self._watch(self.topics.presence_of_all_devices(user), 0, timeout)

    def watch_profile(self, user: str, timeout: float = TIMEOUT) -> bool:
        """Subscribes to `user`'s retained profile."""
        return self._watch(self.topics.profile(user), 1, timeout)

    # Receiving.

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        place = self.topics.parse(message.topic)
        if place is None:
            return
        packet, problem = None, None
        if not message.payload:
            problem = "cleared"
        else:
            try:
                packet = decode_packet(bytes(message.payload))
            except PacketError as e:
                problem = str(e)
        if packet is not None and place.kind == "durable" and packet.type == TYPE_NUMBERS["contact"]:
            self._follow_contact(packet)
        self.received.append(Incoming(place, packet, bool(message.retain), problem))

    def _follow_contact(self, packet: Packet) -> None:
        """Keeps the presence subscriptions with the contacts (spec 4): subscribes when a
        `contact` event makes the peer a contact, unsubscribes when one removes them. Runs on
        paho's network thread, so it asks and does not wait for the SUBACK."""
        peer, action = packet.conv, packet.body.get("action")
        if not isinstance(peer, str) or peer.startswith(("#", "sip:")):
            return
        mine = packet.from_ == self.user
        accepted = action == "accept" or (
            action == "request" and self._asked.get(peer) == ("in" if mine else "out")
        )
        if action == "request" and not accepted:
            self._asked[peer] = "out" if mine else "in"
            return
        self._asked.pop(peer, None)
        topic = self.topics.presence_of_all_devices(peer)
        if accepted:
            self._watched[topic] = 0
            self._client.subscribe(topic, 0)
        elif action == "remove" and self._watched.pop(topic, None) is not None:
            self._client.unsubscribe(topic)

    def wait_for(self, kind: str, type_name: str, timeout: float = TIMEOUT, **envelope: Any) -> Packet:
        """The first packet received on `kind` topics of type `type_name` whose envelope
        attributes equal `envelope` (e.g. conv="bob", seq=1)."""

        def match(i: Incoming) -> bool:
            return i.is_packet(kind, type_name) and all(getattr(i.packet, k) == v for k, v in envelope.items())

        found = self.received.wait_for(match, timeout, f"{kind} {type_name} {envelope}")
        assert found.packet is not None
        return found.packet

    # Sending (sections 7 and 9).

    def publish_upstream(self, payload: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Publishes a payload as it is on this device's upstream topic."""
        return self._client.publish(self.topics.upstream(self.user, self.device), payload, qos)

    def send(self, packet: Packet) -> mqtt.MQTTMessageInfo:
        """Sends a packet to the hub: QoS 0 for chat states, QoS 1 for everything else."""
        qos = 0 if packet.type == TYPE_NUMBERS["chat-state"] else 1
        return self.publish_upstream(encode_packet(packet), qos)

    def _event(self, type_name: str, conv: str, body: dict[str, Any], unknown: dict[int, bytes] | None = None) -> int:
        packet = Packet(TYPE_NUMBERS[type_name], id=self.ids.next(), conv=conv, body=body, unknown=unknown or {})
        self.send(packet)
        assert packet.id is not None
        return packet.id

    def send_message(
        self,
        conv: str,
        text: str,
        *,
        reply_to: int | None = None,
        mentions: list[str] | None = None,
        unknown: dict[int, bytes] | None = None,
    ) -> int:
        """Sends a message; returns its id (see `wait_sent`). `unknown`: extra body keys."""
        body: dict[str, Any] = {"text": text}
        if reply_to is not None:
            body["reply-to"] = reply_to
        if mentions is not None:
            body["mentions"] = mentions
        return self._event("message", conv, body, unknown)

    def send_contact(self, conv: str, action: str, note: str | None = None) -> int:
        """A contact action (request, accept, decline, cancel, remove); returns its id."""
        return self._event("contact", conv, {"action": action} | ({"note": note} if note is not None else {}))

    def send_chat_state(self, conv: str, state: str) -> None:
        self.send(Packet(TYPE_NUMBERS["chat-state"], conv=conv, body={"state": state}))

    def send_delivered(self, conv: str, up_to: int) -> None:
        self.send(Packet(TYPE_NUMBERS["delivered"], conv=conv, body={"up-to": up_to}))

    def send_read(self, conv: str, up_to: int, private: bool = False) -> None:
        body: dict[str, Any] = {"up-to": up_to} | ({"private": True} if private else {})
        self.send(Packet(TYPE_NUMBERS["read"], conv=conv, body=body))

    def set_presence(self, availability: str, status: str | None = None) -> mqtt.MQTTMessageInfo:
        """Publishes this device's presence, retained, with the time (and `last-active` when
        going offline)."""
        now = now_ms()
        body: dict[str, Any] = {"availability": availability}
        if status is not None:
            body["status"] = status
        if availability == "offline":
            body["last-active"] = now
        payload = encode_packet(Packet(TYPE_NUMBERS["presence"], ts=now, body=body))
        return self._client.publish(self.topics.presence(self.user, self.device), payload, 1, retain=True)

    def wait_sent(self, id: int, timeout: float = TIMEOUT) -> Packet:
        """Waits until the hub stored the event `id`: returns its own copy from the durable
        inbox (with `seq`), or the `ack` of a duplicate. Raises Refused on an error."""

        def match(i: Incoming) -> bool:
            p = i.packet
            if p is None or p.id != id:
                return False
            own_copy = i.place.kind == "durable" and p.from_ == self.user and p.device == self.device
            return own_copy or i.place.kind == "reply"

        found = self.received.wait_for(match, timeout, f"confirmation of {id_to_text(id)}").packet
        assert found is not None
        if found.type == TYPE_NUMBERS["error"]:
            raise Refused(found)
        return found

    # Requests (sections 7.6, 7.9, 7.10, 7.11, 11).

    def request(self, packet: Packet, timeout: float = TIMEOUT) -> Packet:
        """Sends a request (a new id is given if it has none) and returns the reply with its
        id; raises Refused on an error reply. Replies to other ids are left alone."""
        if packet.id is None:
            packet.id = self.ids.next()
        self.send(packet)
        request_id = packet.id

        def match(i: Incoming) -> bool:
            return i.place.kind == "reply" and i.packet is not None and i.packet.id == request_id

        reply = self.received.wait_for(match, timeout, f"reply to {id_to_text(request_id)}").packet
        assert reply is not None
        if reply.type == TYPE_NUMBERS["error"]:
            raise Refused(reply)
        return reply

    def set_profile(self, timeout: float = TIMEOUT, **fields: str) -> Packet:
        """Changes the profile (name, avatar, status; "" clears); returns the hub's ack,
        whose `seq` is the profile's new version."""
        return self.request(Packet(TYPE_NUMBERS["profile"], body=fields), timeout)

    def sync(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        timeout: float = TIMEOUT,
    ) -> Packet:
        """One page of the conversations that changed (section 11); a `sync-result`."""
        body = {"after": after, "before": before, "limit": limit, "newest-first": newest_first or None}
        return self.request(Packet(TYPE_NUMBERS["sync"], body=_present(body)), timeout)

    def history(
        self,
        conv: str,
        *,
        after: int | None = None,
        before: int | None = None,
        since: int | None = None,
        limit: int | None = None,
        timeout: float = TIMEOUT,
    ) -> Packet:
        """One page of a conversation's events, ascending (section 11); a `history-result`."""
        body = {"after": after, "before": before, "since": since, "limit": limit}
        return self.request(Packet(TYPE_NUMBERS["history"], conv=conv, body=_present(body)), timeout)

    # Groups (section 7.11). Each request is answered by an `ack` (carrying the group's `conv`
    # and the `seq` of the group-event it produced) or an error, raised as Refused.

    def create_group(
        self,
        name: str,
        *,
        invite: list[str] | None = None,
        avatar: str | None = None,
        description: str | None = None,
        history: str | None = None,
        timeout: float = TIMEOUT,
    ) -> Packet:
        """Creates a group (this user is its owner), inviting `invite` at once; returns the
        ack, whose `conv` is the new group (`#...`) and `seq` that of its `created` event."""
        body = {"name": name, "invite": invite, "avatar": avatar, "description": description, "history": history}
        return self.request(Packet(TYPE_NUMBERS["group-create"], body=_present(body)), timeout)

    def group_admin(
        self,
        group: str,
        action: str,
        *,
        user: str | None = None,
        role: str | None = None,
        timeout: float = TIMEOUT,
        **changes: str,
    ) -> Packet:
        """An admin action (invite, cancel, remove, role, transfer, update, delete) on
        `group`; `changes`: name, avatar, description, history (update). Returns the ack."""
        body = {"action": action, "user": user, "role": role, **changes}
        return self.request(Packet(TYPE_NUMBERS["group-admin"], conv=group, body=_present(body)), timeout)

    def group_join(self, group: str, action: str, timeout: float = TIMEOUT) -> Packet:
        """Answers an invitation (accept, decline) or leaves (leave); returns the ack."""
        return self.request(Packet(TYPE_NUMBERS["group-join"], conv=group, body={"action": action}), timeout)

    def group_info(self, group: str, timeout: float = TIMEOUT) -> Packet:
        """The group's profile, members, roles and markers: a `group-info-result`."""
        return self.request(Packet(TYPE_NUMBERS["group-info"], conv=group), timeout)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
