"""The replication apply rule: last writer wins on the hlc, but a lower epoch never overrides a job owned
under a higher one (regionflow.state.apply_rule)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regionflow.state.apply_rule import (
    Version,
    job_row_wins,
    job_wins,
    lww_wins,
    notification_wins,
    reference_part_wins,
)

epochs = st.integers(min_value=0, max_value=1_000)
hlcs = st.integers(min_value=0, max_value=2**63 - 1)
versions = st.builds(Version, epochs, hlcs)
maybe_versions = st.none() | versions
statuses = st.sampled_from([None, "pending", "sending", "sent", "failed"])


# ---------------------------------------------------------------- plain last-writer-wins


@pytest.mark.parametrize(("incoming", "stored", "wins"), [
    (Version(1, 10), None, True),  # nothing to lose to
    (Version(1, 11), Version(1, 10), True),  # same epoch, later hlc
    (Version(1, 9), Version(1, 10), False),  # same epoch, earlier hlc
    (Version(1, 10), Version(1, 10), False),  # the same write again changes nothing
    (Version(2, 1), Version(1, 10), True),  # a higher epoch wins with an earlier hlc
    (Version(1, 99), Version(2, 1), False),  # a lower epoch loses with a later hlc
])
def test_lww(incoming: Version, stored: Version | None, wins: bool) -> None:
    assert lww_wins(incoming, stored) is wins


@given(versions, versions)
def test_lww_at_most_one_of_two_distinct_writes_beats_the_other(a: Version, b: Version) -> None:
    if a == b:
        assert not lww_wins(a, b)
    else:
        assert lww_wins(a, b) != lww_wins(b, a)


@given(epochs, epochs, hlcs, hlcs)
def test_lww_higher_epoch_wins_whatever_the_hlcs(e1: int, e2: int, h1: int, h2: int) -> None:
    low, high = sorted((e1, e2))
    if low != high:
        assert lww_wins(Version(high, h1), Version(low, h2))
        assert not lww_wins(Version(low, h1), Version(high, h2))


@given(epochs, hlcs, hlcs)
def test_lww_same_epoch_later_hlc_wins(epoch: int, h1: int, h2: int) -> None:
    assert lww_wins(Version(epoch, h1), Version(epoch, h2)) is (h1 > h2)


# ---------------------------------------------------------------- jobs


@pytest.mark.parametrize(("incoming", "owner_epoch", "stored", "wins"), [
    (Version(1, 5), None, None, True),  # no local job
    (Version(1, 5), None, Version(9, 99), True),  # no local job (deleted): its version does not matter
    (Version(3, 1), 2, Version(2, 50), True),  # claimed under a higher epoch, with an older hlc
    (Version(2, 99), 3, Version(3, 1), False),  # a lower epoch never overrides, however late
    (Version(2, 51), 2, Version(2, 50), True),  # same owner epoch: the later write wins
    (Version(2, 49), 2, Version(2, 50), False),
    (Version(2, 50), 2, Version(2, 50), False),  # the same write again
    (Version(2, 1), 2, None, True),  # same owner epoch, no recorded version
    (Version(2, 51), 2, Version(7, 50), True),  # the stored version's epoch is not consulted
])
def test_job(incoming: Version, owner_epoch: int | None, stored: Version | None, wins: bool) -> None:
    assert job_wins(incoming, owner_epoch=owner_epoch, stored=stored) is wins


@given(epochs, epochs, hlcs, maybe_versions)
def test_job_owner_epoch_decides_before_the_hlc(epoch: int, owner: int, hlc: int, stored: Version | None) -> None:
    wins = job_wins(Version(epoch, hlc), owner_epoch=owner, stored=stored)
    if epoch > owner:
        assert wins
    elif epoch < owner:
        assert not wins


@given(epochs, hlcs, hlcs)
def test_job_same_epoch_later_hlc_wins(epoch: int, hlc: int, stored_hlc: int) -> None:
    stored = Version(epoch, stored_hlc)
    assert job_wins(Version(epoch, hlc), owner_epoch=epoch, stored=stored) is (hlc > stored_hlc)


# ---------------------------------------------------------------- chunks and rejects


@pytest.mark.parametrize(("incoming", "owner_epoch", "stored", "wins"), [
    (Version(1, 5), None, None, True),
    (Version(2, 5), 2, None, True),  # written under the owner's epoch
    (Version(3, 5), 2, None, True),  # under a higher one (its job change follows)
    (Version(1, 99), 2, None, False),  # by a region that has lost the job
    (Version(2, 5), 2, Version(2, 6), False),  # an older write of the chunk
    (Version(2, 7), 2, Version(2, 6), True),
    (Version(1, 99), None, Version(2, 6), False),  # no local job: plain last-writer-wins
])
def test_job_row(incoming: Version, owner_epoch: int | None, stored: Version | None, wins: bool) -> None:
    assert job_row_wins(incoming, owner_epoch=owner_epoch, stored=stored) is wins


@given(versions, epochs, maybe_versions)
def test_job_row_under_a_lower_epoch_than_the_owner_never_wins(
    incoming: Version, owner: int, stored: Version | None
) -> None:
    if incoming.epoch < owner:
        assert not job_row_wins(incoming, owner_epoch=owner, stored=stored)
    else:
        assert job_row_wins(incoming, owner_epoch=owner, stored=stored) is lww_wins(incoming, stored)


# ---------------------------------------------------------------- notifications


@pytest.mark.parametrize(("incoming", "stored", "local_status", "status", "wins"), [
    (Version(0, 5), None, None, "sending", True),
    (Version(0, 99), Version(0, 5), "sent", "sending", False),  # delivered stays delivered
    (Version(0, 1), Version(0, 5), "sending", "sent", True),  # a delivery elsewhere is never undone
    (Version(0, 1), Version(0, 5), "sent", "sent", False),  # otherwise last writer wins
    (Version(0, 9), Version(0, 5), "sent", "sent", True),
    (Version(0, 9), Version(0, 5), "sent", None, True),  # a later delete
])
def test_notification(incoming: Version, stored: Version | None, local_status: str | None, status: str | None,
                      wins: bool) -> None:
    assert notification_wins(incoming, stored=stored, local_status=local_status, status=status) is wins


@given(versions, maybe_versions, statuses, statuses)
def test_notification_rule(incoming: Version, stored: Version | None, local: str | None, status: str | None) -> None:
    wins = notification_wins(incoming, stored=stored, local_status=local, status=status)
    if local == "sent" and status == "sending":
        assert not wins
    elif local == "sending" and status == "sent":
        assert wins
    else:
        assert wins is lww_wins(incoming, stored)


# ---------------------------------------------------------------- reference parts


@pytest.mark.parametrize(("hlc", "table_version", "wins"), [
    (5, None, True),
    (11, Version(0, 10), True),  # a later load's part
    (9, Version(0, 10), False),  # a part of a load that lost (or of the current one, again)
    (10, Version(0, 10), False),
    (11, Version(5, 10), True),  # only the hlc is compared
])
def test_reference_part(hlc: int, table_version: Version | None, wins: bool) -> None:
    assert reference_part_wins(hlc, table_version) is wins
