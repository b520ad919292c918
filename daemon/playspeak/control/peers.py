"""Kept for old imports: peers, groups and the allow-lists live in `playspeak.door.peers`."""

from playspeak.door.peers import (  # noqa: F401
    AccessPolicy,
    Peer,
    give_to_group,
    peer_groups,
    peer_of,
    resolve_group,
)
