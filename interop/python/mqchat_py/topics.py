"""The topic tree under a root (spec section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import DEVICE_ID, USER_ID


@dataclass(frozen=True)
class Place:
    """What a topic is: its kind (`upstream`, `durable`, `ephemeral`, `reply`, `presence`,
    `profile`, or the hub-internal `gateway-in` and `gateway-out`), the user it belongs to
    (for gateway topics, the gateway's name) and, for per-device topics, the device."""

    kind: str
    user: str
    device: str | None = None


@dataclass(frozen=True)
class Topics:
    """The topics of one server, under its configured root (default `mq`)."""

    root: str = "mq"

    def upstream(self, user: str, device: str) -> str:
        return f"{self.root}/up/{user}/{device}"

    def durable(self, user: str) -> str:
        return f"{self.root}/in/{user}/d"

    def ephemeral(self, user: str) -> str:
        return f"{self.root}/in/{user}/e"

    def replies(self, user: str, device: str) -> str:
        return f"{self.root}/in/{user}/r/{device}"

    def presence(self, user: str, device: str) -> str:
        return f"{self.root}/pr/{user}/{device}"

    def presence_of_all_devices(self, user: str) -> str:
        return f"{self.root}/pr/{user}/+"

    def profile(self, user: str) -> str:
        return f"{self.root}/pf/{user}"

    def parse(self, topic: str) -> Place | None:
        """What a topic of this root is, or None if it is not one of the tree's topics."""
        prefix = self.root + "/"
        if not topic.startswith(prefix):
            return None
        levels = topic[len(prefix) :].split("/")
        if len(levels) == 3 and levels[0] == "gw" and DEVICE_ID.fullmatch(levels[1]) and levels[2] in ("in", "out"):
            return Place(f"gateway-{levels[2]}", levels[1])
        if len(levels) < 2 or not USER_ID.fullmatch(levels[1]):
            return None
        head, user, rest = levels[0], levels[1], levels[2:]
        device = rest[-1] if rest and DEVICE_ID.fullmatch(rest[-1]) else None
        if head == "up" and len(rest) == 1 and device:
            return Place("upstream", user, device)
        if head == "in" and rest in (["d"], ["e"]):
            return Place("durable" if rest == ["d"] else "ephemeral", user)
        if head == "in" and len(rest) == 2 and rest[0] == "r" and device:
            return Place("reply", user, device)
        if head == "pr" and len(rest) == 1 and device:
            return Place("presence", user, device)
        if head == "pf" and not rest:
            return Place("profile", user)
        return None
