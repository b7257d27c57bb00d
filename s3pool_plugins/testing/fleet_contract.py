"""A reusable pytest kit that checks a fleet backend keeps the contract of :class:`~s3pool_plugins.FleetBackend`.

Subclass :class:`FleetBackendContract` in a test module and override its
``make_backend`` fixture with a factory that builds a *new* backend object on
the store under test for a fleet name. Two objects built for the same name
must share state, as two processes of one fleet do::

    import pytest
    from s3pool_plugins.testing.fleet_contract import FleetBackendContract

    class TestMyBackend(FleetBackendContract):
        secrets = ("hunter2",)

        @pytest.fixture
        def make_backend(self, my_server):
            return lambda fleet_name: MyBackend(my_server.url, fleet_name=fleet_name)

Every test uses a fleet name of its own, so a store that persists between
tests is fine. The kit closes every backend it built. The checks run on the
backend's own clock: they sleep (a few seconds in all) and allow for a
store's clock granularity of a millisecond. It needs pytest and hypothesis
(the project's ``test`` extra).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..core.fleet.backend import FleetBackend, FleetPartition, SharedLimit

BackendFactory = Callable[[str], FleetBackend]
"""Builds a new backend object on the store under test for a fleet name."""

_CLOCK_SLACK = 0.005
"""Seconds a store's clock may differ from ``time.monotonic`` over one check (granularity, call time)."""


class Members:
    """Backend objects of one fleet (a fresh name per test), as separate processes would hold them."""

    def __init__(self, factory: BackendFactory) -> None:
        self._factory = factory
        self._built: list[FleetBackend] = []
        self.fleet_name = f"contract-{uuid.uuid4().hex[:12]}"

    def backend(self, fleet_name: str | None = None) -> FleetBackend:
        """A new backend object for this fleet (or for ``fleet_name``), closed after the test."""
        made = self._factory(self.fleet_name if fleet_name is None else fleet_name)
        self._built.append(made)
        return made

    def partitions(self, count: int, key: str = "bucket/prefix/") -> list[FleetPartition]:
        """Partition ``key`` as seen by ``count`` separate backend objects of this fleet."""
        return [self.backend().partition(key) for _ in range(count)]

    def close(self) -> None:
        """Close everything built (twice, to check that close is idempotent)."""
        for made in self._built:
            made.close()
            made.close()


def _run_threads(count: int, body: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            body(index)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a backend call did not return within 60 s"
    if errors:
        raise errors[0]


class FleetBackendContract:
    """The contract of a fleet backend, as pytest tests. Override :meth:`make_backend`."""

    secrets: tuple[str, ...] = ()
    """Strings (passwords, tokens) the backend was given that must never show in its description, repr or errors."""

    @pytest.fixture
    def make_backend(self) -> BackendFactory:
        """Override: a factory ``fleet_name -> FleetBackend`` building a new object on the store under test."""
        raise NotImplementedError("subclass FleetBackendContract and override the make_backend fixture")

    @pytest.fixture
    def members(self, make_backend: BackendFactory) -> Iterator[Members]:
        """The members of a fleet of this test's own."""
        made = Members(make_backend)
        try:
            yield made
        finally:
            made.close()

    # Identity and isolation -------------------------------------------------

    def test_description_names_the_store_without_secrets(self, members: Members) -> None:
        backend = members.backend()
        assert isinstance(backend.description, str) and backend.description
        assert backend.fleet_name == members.fleet_name
        for secret in self.secrets:
            assert secret not in backend.description
            assert secret not in repr(backend)

    def test_partitions_and_fleet_names_do_not_share(self, members: Members) -> None:
        one = members.backend()
        other_fleet = members.backend(members.fleet_name + "-other")
        assert one.partition("a").take_tokens(5, 0.001, 5).granted == 5
        assert one.partition("a").take_tokens(1, 0.001, 5).granted == 0
        assert one.partition("b").take_tokens(5, 0.001, 5).granted == 5
        assert other_fleet.partition("a").take_tokens(5, 0.001, 5).granted == 5
        assert one.partition("a").key == "a"

    # The token bucket -------------------------------------------------------

    def test_new_bucket_starts_full_and_empties(self, members: Members) -> None:
        first, second = members.partitions(2)
        assert first.take_tokens(3, 0.01, 4).granted == 3
        grant = second.take_tokens(3, 0.01, 4)
        assert grant.granted == 1
        assert grant.retry_after > 0

    def test_retry_after_says_when_the_next_token_is_due(self, members: Members) -> None:
        (part,) = members.partitions(1)
        rate = 20.0
        assert part.take_tokens(2, rate, 2).granted == 2
        grant = part.take_tokens(1, rate, 2)
        assert grant.granted == 0
        assert 0 < grant.retry_after <= 1 / rate + _CLOCK_SLACK
        time.sleep(grant.retry_after + 2 * _CLOCK_SLACK)
        after = part.take_tokens(1, rate, 2)
        assert (after.granted, after.retry_after) == (1, 0.0)

    def test_fleet_is_never_granted_more_than_burst_plus_rate_times_t(self, members: Members) -> None:
        parts = members.partitions(3)
        rate, burst = 80.0, 6.0
        granted = [0] * 6
        started = time.monotonic()
        stop_at = started + 0.8

        def take(index: int) -> None:
            part = parts[index % len(parts)]
            count = 1 + index % 3
            while time.monotonic() < stop_at:
                grant = part.take_tokens(count, rate, burst)
                assert 0 <= grant.granted <= count
                assert grant.retry_after >= 0
                granted[index] += grant.granted
                if grant.granted < count:
                    time.sleep(min(grant.retry_after, 0.01))

        _run_threads(len(granted), take)
        elapsed = time.monotonic() - started
        total = sum(granted)
        assert total <= burst + rate * (elapsed + _CLOCK_SLACK)
        assert total >= rate * 0.8 * 0.5, "the bucket does not refill at the rate asked"

    # Slots ------------------------------------------------------------------

    def test_leases_never_sum_above_the_limit(self, members: Members) -> None:
        parts = members.partitions(4)
        limit = 7
        held = [0] * 4
        lock = threading.Lock()
        peak = [0]

        def churn(index: int) -> None:
            part = parts[index]
            name = f"m{index}"
            for round_ in range(60):
                if round_ % 3 == 2:
                    # A member stops counting slots before it gives them back (as the agent does): counted
                    # after the call, a release could show up after another member's lease of the same slots.
                    with lock:
                        held[index] = max(0, held[index] - (1 + round_ % 2))
                    now = part.release_slots(name, 1 + round_ % 2)
                else:
                    now = part.lease_slots(name, 1 + round_ % 3, limit, 30.0)
                assert now >= 0
                with lock:
                    held[index] = now
                    peak[0] = max(peak[0], sum(held))

        _run_threads(4, churn)
        assert peak[0] <= limit
        final = [part.renew_slots(f"m{i}", 30.0) for i, part in enumerate(parts)]
        assert final == held
        assert sum(final) <= limit

    @settings(
        max_examples=25,
        deadline=None,
        # Each backend's test class runs this one test (differing executors): the examples are independent.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
    )
    @given(
        limit=st.integers(min_value=1, max_value=12),
        steps=st.lists(
            st.tuples(st.integers(0, 2), st.sampled_from(["lease", "release", "renew"]), st.integers(0, 5)),
            max_size=30,
        ),
    )
    def test_slots_follow_the_model(self, members: Members, limit: int, steps: list[tuple[int, str, int]]) -> None:
        part = members.backend(f"{members.fleet_name}-{uuid.uuid4().hex[:8]}").partition("p")
        model = [0, 0, 0]
        for member, action, count in steps:
            name = f"m{member}"
            others = sum(model) - model[member]
            if action == "lease":
                expected = model[member] + min(count, limit - others - model[member])
                got = part.lease_slots(name, count, limit, 30.0)
            elif action == "release":
                expected = max(0, model[member] - count)
                got = part.release_slots(name, count)
            else:
                expected = model[member]
                got = part.renew_slots(name, 30.0)
            assert got == expected, (action, name, count, model)
            model[member] = got
            assert sum(model) <= limit

    def test_an_expired_lease_gives_its_slots_back(self, members: Members) -> None:
        first, second = members.partitions(2)
        assert first.lease_slots("a", 5, 5, 0.3) == 5
        assert second.lease_slots("b", 2, 5, 10.0) == 0
        time.sleep(0.45)
        assert second.lease_slots("b", 5, 5, 10.0) == 5
        assert first.renew_slots("a", 10.0) == 0
        assert first.lease_slots("a", 1, 5, 10.0) == 0

    def test_renewal_keeps_a_lease(self, members: Members) -> None:
        first, second = members.partitions(2)
        assert first.lease_slots("a", 3, 3, 0.4) == 3
        time.sleep(0.25)
        assert first.renew_slots("a", 0.6) == 3
        time.sleep(0.25)
        assert second.lease_slots("b", 1, 3, 10.0) == 0
        assert first.lease_slots("a", 0, 3, 0.6) == 3

    def test_released_slots_go_to_others(self, members: Members) -> None:
        first, second = members.partitions(2)
        assert first.lease_slots("a", 4, 4, 10.0) == 4
        assert first.release_slots("a", 3) == 1
        assert second.lease_slots("b", 4, 4, 10.0) == 3
        assert first.release_slots("a", 9) == 0
        assert second.lease_slots("b", 1, 4, 10.0) == 4

    # The learned limit ------------------------------------------------------

    def test_learned_limit_is_compare_and_set(self, members: Members) -> None:
        first, second = members.partitions(2)
        assert first.shared_limit() is None
        proposal = SharedLimit(rate=87.5, limit=12, ceiling=95.25)
        stored = first.propose_limit(proposal)
        assert (stored.rate, stored.limit, stored.ceiling, stored.version) == (87.5, 12, 95.25, 1)
        assert second.shared_limit() == stored
        lost = second.propose_limit(SharedLimit(rate=None, limit=3, ceiling=None))
        assert lost == stored
        won = second.propose_limit(SharedLimit(rate=None, limit=3, ceiling=None, version=1))
        assert (won.rate, won.limit, won.ceiling, won.version) == (None, 3, None, 2)
        assert first.shared_limit() == won
        assert won.updated_at >= stored.updated_at

    def test_an_empty_store_takes_a_proposal_based_on_any_version(self, members: Members) -> None:
        """A store restarted empty takes what a member last knew (its version is from before the restart)."""
        (part,) = members.partitions(1)
        stored = part.propose_limit(SharedLimit(rate=42.0, limit=5, ceiling=50.0, version=7))
        assert (stored.rate, stored.limit, stored.ceiling, stored.version) == (42.0, 5, 50.0, 1)
        assert part.shared_limit() == stored

    def test_concurrent_proposals_have_one_winner(self, members: Members) -> None:
        parts = members.partitions(4)
        answers: list[SharedLimit] = [SharedLimit(rate=None, limit=0, ceiling=None)] * 8

        def propose(index: int) -> None:
            answers[index] = parts[index % 4].propose_limit(
                SharedLimit(rate=float(index + 1), limit=index + 1, ceiling=None)
            )

        _run_threads(8, propose)
        stored = parts[0].shared_limit()
        assert stored is not None and stored.version == 1
        assert answers == [stored] * 8, "every proposal from version 0 sees the one stored record"

    # The retry budget -------------------------------------------------------

    def test_retry_budget_starts_full_and_is_bounded(self, members: Members) -> None:
        first, second = members.partitions(2)
        assert first.take_retry(4, 5)
        assert not second.take_retry(2, 5)
        assert second.take_retry(1, 5)
        assert not first.take_retry(1, 5)
        second.give_retry(3, 5)
        assert first.take_retry(3, 5)
        assert not first.take_retry(1, 5)
        first.give_retry(100, 5)
        assert second.take_retry(5, 5)
        assert not second.take_retry(1, 5)

    def test_retry_budget_under_contention(self, members: Members) -> None:
        parts = members.partitions(3)
        capacity = 40
        taken = [0] * 6

        def take(index: int) -> None:
            part = parts[index % 3]
            for _ in range(20):
                if part.take_retry(1, capacity):
                    taken[index] += 1

        _run_threads(6, take)
        assert sum(taken) == capacity

    # Shape of the answers ---------------------------------------------------

    def test_answers_have_the_contract_types(self, members: Members) -> None:
        (part,) = members.partitions(1)
        grant = part.take_tokens(2, 10.0, 3)
        assert isinstance(grant.granted, int) and isinstance(grant.retry_after, float)
        assert isinstance(part.lease_slots("m", 1, 2, 5.0), int)
        stored = part.propose_limit(SharedLimit(rate=1.5, limit=2, ceiling=None))
        assert isinstance(stored.version, int) and isinstance(stored.updated_at, float)
        assert math.isfinite(stored.updated_at)
        assert isinstance(part.take_retry(1, 2), bool)


__all__ = ["BackendFactory", "FleetBackendContract", "Members"]
