"""The global request rate, `CHATMODELS_THROTTLE_RATE` (e.g. `600/min`; empty: none).

It applies to every API request of each key (of each client address for anonymous calls:
`clients.client_address`, which trusts X-Forwarded-For only from CHATMODELS_TRUSTED_PROXIES) and
is counted in the limits store that every worker process and host share (`chatmodels.limits`),
so that two workers do not each let the whole rate through. A key's own limits (requests and
tokens per minute, monthly budget) are checked by the chat pipeline on top of it.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from chatmodels import clients, limits

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`N/s`, `N/min`, `N/hour`, `N/day` (DRF's format) → (N, seconds)."""
    number, _, period = rate.partition("/")
    try:
        return int(number), _PERIODS[period.strip()[:1]]
    except (ValueError, KeyError):
        raise ValueError(
            f"CHATMODELS_THROTTLE_RATE must look like 600/min (N/s, N/min, N/hour, N/day),"
            f" got {rate!r}"
        ) from None


class ApiKeyRateThrottle(BaseThrottle):
    """Counts requests per key (per client address for anonymous calls) in the shared store."""

    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request, view) -> bool:
        rate = settings.CHATMODELS_THROTTLE_RATE  # read per request: settings may change
        if not rate:
            return True
        limit, period = parse_rate(rate)
        key = request.auth
        if key is not None:
            subject = f"rate:key:{key.id}"
        else:
            # X-Forwarded-For only from CHATMODELS_TRUSTED_PROXIES: a client cannot pick its own.
            subject = clients.subject("rate:ip", clients.client_address(request.META))
        self._wait = limits.count_request(subject, limit=limit, period=period)
        return self._wait == 0

    def wait(self) -> float:
        return self._wait
