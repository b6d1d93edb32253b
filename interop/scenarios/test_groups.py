"""Group chat between the three implementations (spec section 7.11): a group with one member
from each. The `mqchat` command line cannot yet accept a group invitation or show group events
(issue 4), so the Rust side cannot be a member: the scenario is skipped rather than faked."""

from __future__ import annotations

import pytest

ISSUE_4 = "groups between Python, Node and Rust wait for group commands in the mqchat command line (issue 4)"


@pytest.mark.skip(reason=ISSUE_4)
def test_group_with_a_member_from_each_implementation() -> None:
    """Python creates a group inviting Node and Rust; both accept; each sends a message that
    the two others receive with `from` set; read markers reach the authors; `group-info`
    lists the three members with their markers."""
