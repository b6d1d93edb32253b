"""mqchat_py: a small mqchat client written from docs/PROTOCOL.md alone, on paho-mqtt and
cbor2.

- `packet`: packets, their schemas, CBOR and JSON forms (spec sections 5 and 7);
- `ids`: client message ids (section 6);
- `topics`: the topic tree (section 4);
- `hub_check`: what the hub refuses at its edge (section 8, step 2);
- `device`: an MQTT connection of a user's device (sections 3, 9-13).
"""

from .device import Device, Incoming, Refused
from .ids import IdGenerator, id_from_text, id_to_text
from .packet import Packet, PacketError, decode_packet, encode_packet, packet_from_json, packet_to_json

__all__ = [
    "Device",
    "IdGenerator",
    "Incoming",
    "Packet",
    "PacketError",
    "Refused",
    "decode_packet",
    "encode_packet",
    "id_from_text",
    "id_to_text",
    "packet_from_json",
    "packet_to_json",
]
