"""Retry delays (engine/results.py backoff_delay): exponential, linear and constant growth,
the max_delay_seconds cap, and jitter keeping 50-100 % of the delay."""

from __future__ import annotations

import pytest

from aetherflow.engine.results import backoff_delay
from aetherflow.model import RetrySpec


@pytest.mark.parametrize(("backoff", "delays"), [
    ("exponential", [2.0, 4.0, 8.0, 10.0]),
    ("linear", [2.0, 4.0, 6.0, 8.0]),
    ("constant", [2.0, 2.0, 2.0, 2.0]),
])
def test_growth_and_cap_without_jitter(backoff: str, delays: list[float]) -> None:
    retry = RetrySpec(max_attempts=5, backoff=backoff, initial_delay_seconds=2.0, max_delay_seconds=10.0, jitter=False)
    assert [backoff_delay(retry, a) for a in (1, 2, 3, 4)] == delays


def test_jitter_keeps_half_to_all_of_the_delay() -> None:
    retry = RetrySpec(max_attempts=3, initial_delay_seconds=4.0)
    assert backoff_delay(retry, 1, rng=lambda: 0.0) == 2.0
    assert backoff_delay(retry, 1, rng=lambda: 1.0) == 4.0
    seen = {backoff_delay(retry, 2) for _ in range(50)}  # the default source: random.random
    assert all(4.0 <= d <= 8.0 for d in seen) and len(seen) > 1
