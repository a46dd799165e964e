"""Whether a change replicated from another region's feed wins over the local row (DESIGN §3, §4).

Last writer wins on the hybrid logical clock, except that a change written under a lower epoch never
overrides a job owned under a higher one. Pure functions of versions and epochs: the store loads them
(row_versions, the local job's owner epoch) and keeps them current across a batch.
"""

from __future__ import annotations

from typing import NamedTuple


class Version(NamedTuple):
    """A write of a row: the epoch it was written under and its hlc. Compares epoch first, then hlc."""

    epoch: int
    hlc: int


def lww_wins(incoming: Version, stored: Version | None) -> bool:
    """Last writer wins: a higher epoch first, then a higher hlc (no stored version: nothing to lose to).

    An equal version loses, so applying a change twice changes nothing the second time.
    """
    return stored is None or incoming > stored


def job_wins(incoming: Version, *, owner_epoch: int | None, stored: Version | None) -> bool:
    """Whether a change to a job row wins.

    incoming.epoch is the owner epoch in the change's row image (the change's epoch for a delete);
    owner_epoch is the local job's (None: no local job). A higher owner epoch always wins and a lower
    one never does; at the same owner epoch the later hlc wins. The stored version's epoch is not
    consulted: the owner epochs decide.
    """
    if owner_epoch is None or incoming.epoch > owner_epoch:
        return True
    return incoming.epoch == owner_epoch and (stored is None or incoming.hlc > stored.hlc)


def job_row_wins(incoming: Version, *, owner_epoch: int | None, stored: Version | None) -> bool:
    """Whether a change to a chunk or reject of a job wins.

    It must be written under at least the local job's owner epoch (a region that lost the job cannot
    change its chunks), then last writer wins against stored (None for rejects, which are unversioned).
    """
    return (owner_epoch is None or incoming.epoch >= owner_epoch) and lww_wins(incoming, stored)


def notification_wins(incoming: Version, *, stored: Version | None, local_status: str | None,
                      status: str | None) -> bool:
    """Whether a change to a notification wins: status (the image's, None for a delete) against the
    local row's (None: no local row).

    A delivery is never undone: a local "sent" is kept against an incoming "sending", and an incoming
    "sent" replaces a local "sending" whatever their versions. Otherwise last writer wins.
    """
    if local_status == "sent" and status == "sending":
        return False
    return (local_status == "sending" and status == "sent") or lww_wins(incoming, stored)


def reference_part_wins(hlc: int, table_version: Version | None) -> bool:
    """Whether a change to a part of a reference table wins against the table row's stored version.

    A load's parts are fed before its reference_tables row, with lower hlcs, so a part newer than the
    table's recorded row belongs to a later load, and a part of a load that lost is dropped too.
    """
    return table_version is None or hlc > table_version.hlc
