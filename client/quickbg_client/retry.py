"""Retries for every request: connection errors, 5xx and 429, with jittered exponential backoff
that honours ``Retry-After``.

Built on tenacity (https://tenacity.readthedocs.io): its stop/wait/retry strategies compose, it
does the sleeping and gives up cleanly, and it is the widely used, maintained choice (the
``backoff`` package covers less and httpx's own transport retries only repeat failed
connects, never a 5xx or a 429, and ignore ``Retry-After``). What is ours is only the wait
rule: the server's ``Retry-After`` when it sent one (plus up to 10 % jitter, so many clients
told the same number do not come back in the same instant), else tenacity's full-jitter
exponential backoff.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import tenacity

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``attempts`` counts the first try."""

    attempts: int = 8
    backoff: float = 0.5  # the exponential backoff's first step, in seconds
    max_backoff: float = 30.0
    max_retry_after: float = 600.0  # a longer Retry-After is cut to this


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.exponential = tenacity.wait_random_exponential(multiplier=policy.backoff,
                                                            max=policy.max_backoff)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            seconds = retry_after_seconds(outcome.result())
            if seconds is not None:
                seconds = min(seconds, self.policy.max_retry_after)
                return seconds + random.uniform(0, 0.1 * seconds)
        return self.exponential(retry_state)


def send(attempt: Callable[[], httpx.Response], policy: RetryPolicy,
         retry_on: Callable[[httpx.Response], bool] | None = None,
         on_retry: Callable[[str], None] | None = None) -> httpx.Response:
    """Call ``attempt`` (one request; it must build its body afresh each time) until it gives a
    response that is not retryable, or the attempts run out: then the last response is
    returned, or the last connection error raised."""

    def retryable(response: httpx.Response) -> bool:
        return response.status_code in RETRY_STATUSES or bool(retry_on and retry_on(response))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is None or state.outcome is None or state.next_action is None:
            return
        if state.outcome.failed:
            what = f"{type(state.outcome.exception()).__name__}: {state.outcome.exception()}"
        else:
            what = f"HTTP {state.outcome.result().status_code}"
        on_retry(f"{what}; retrying in {state.next_action.sleep:.1f} s "
                 f"(attempt {state.attempt_number + 1} of {policy.attempts})")

    def close_discarded(state: tenacity.RetryCallState) -> None:
        if state.outcome is not None and not state.outcome.failed:
            state.outcome.result().close()

    def hooks(state: tenacity.RetryCallState) -> None:
        before_sleep(state)
        close_discarded(state)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=_Wait(policy),
        retry=(tenacity.retry_if_exception_type(httpx.TransportError)
               | tenacity.retry_if_result(retryable)),
        before_sleep=hooks,
        retry_error_callback=lambda state: state.outcome.result(),  # the last answer, or raise
        reraise=True,
    )
    return retrying(attempt)
