"""Per-key limits, counted in a store shared by every worker process and every host.

A key may have requests per minute, tokens per minute and a monthly token budget (`ApiKey`).
`check(key, reserve=N)` runs before a chat request starts: it counts the request, reserves `N`
tokens against the key's token limits, and refuses it (429, `RateLimited` / `QuotaExhausted`,
with `retry_after`) when the key is over a limit. A token limit lets a request in while it has
room left, and the request's reservation is counted at once, so however many requests arrive
together, what they reserve goes past the limit by at most one reservation. When the answer is
done, `record_tokens(key, n, reservation=...)` settles the reservation with the real count
(what was not used is given back; what was used beyond it is counted then). `reservation_for`
sizes a request's reservation: its `max_tokens` (else `CHATMODELS_TOKEN_RESERVATION`) for each
choice, plus an estimate of its prompt. `count_request(subject, limit=, period=)` is the same
request count for any subject and period (the global `CHATMODELS_THROTTLE_RATE`,
`api/throttling.py`).

Minute limits use a sliding window (Cloudflare's "sliding window counter"): a count per fixed
window, and the estimate `previous x (share of the previous window still inside the last
minute) + current`, so a burst across a window edge is not let through twice. The budget is
per calendar month (UTC), and always counted in the database (`limit_stores.apply`), so that a
restart of a cache forgets nothing. The counts live in `limit_stores` (Redis or the database).

When the store does not answer within `CHATMODELS_LIMITS_TIMEOUT`, a request of a key with
limits is refused with 503 `LimitsUnavailable` (`Retry-After`), unless
`CHATMODELS_LIMITS_FAIL_OPEN` lets it through uncounted; keys without limits never ask the store.

Leases. A round trip to the store for every request would cost as much as a fast model's whole
answer, so a process takes its part of a key's limits a little ahead: when a limit has plenty
left, the round trip that counts a request also counts a lease (a few more requests, or tokens,
for this process), and the next requests use it up here without asking the store. A lease is at
most 1/`LEASE_SHARE` of what the limit had left and about `LEASE_REQUESTS` requests' worth, so
near a limit it is 0 and every request is counted in the store as it comes, as exactly as
without leases. A reservation comes out of the lease when the lease holds it all, and what a
request did not use of it goes back to the lease (near a limit: back to the store at once).
Tokens a request uses beyond its reservation are owed to the store: paid at once when they are
more than 1/`LEASE_SHARE` of what is left, else with the next round trip. What is leased and not
used, and what is owed, is settled with the store when its window ends, when the key has been
idle for `CHATMODELS_LIMITS_SETTLE_SECONDS`, and when the process stops; a lease counts as used
meanwhile, so a busy key may be refused a little early (by the leases other processes hold),
never let past its limit by them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.conf import settings
from django.db import connection

from chatmodels.background import PerProcess
from chatmodels.exceptions import ChatModelsError, LimitsUnavailable, QuotaExhausted, RateLimited
from chatmodels.interfaces import AgentRequest
from chatmodels.limit_stores import Increment, apply
from chatmodels.selectors import ApiKeyInfo
from chatmodels.types import ChatRequest

logger = logging.getLogger(__name__)

MINUTE = 60
# How long a window's count is kept after the window ends: the sliding estimate reads the
# previous window, so a minute count must outlive its minute by one more.
_KEEP_AFTER = MINUTE
LEASE_SHARE = 16  # a lease is at most this fraction (1/16) of what the limit has left
LEASE_REQUESTS = 512  # and at most this many requests (or their tokens)


# ---------------------------------------------------------------------------------------------
# What the pipeline calls


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens reserved for one request: `amount` in each token limit's window (by kind)."""

    amount: int
    windows: tuple[tuple[str, int], ...]


def check(key: ApiKeyInfo, *, reserve: int = 0, now: float | None = None) -> Reservation | None:
    """Count one request of `key`, reserve `reserve` tokens against its token limits, and raise
    if it is over a limit (nothing to do without any). Returns what was reserved, which
    `record_tokens` settles."""
    limits = _limits_of(key)
    if not limits:
        return None
    reserve = reserve if counts_tokens(key) else 0
    now = time.time() if now is None else now
    held = _held_for(key.id)
    with held.lock:
        parts = held.parts_of(key.id, limits, now)
        if held.covers_a_request(parts, reserve):
            return _reservation(parts, reserve)
        return _exchange(key, held, limits, now, request=True, reserve=reserve)


def reservation_for(request: ChatRequest | AgentRequest) -> int:
    """The tokens to reserve for `request`: its `max_tokens` (else CHATMODELS_TOKEN_RESERVATION)
    for each of its `n` choices, plus its prompt estimated at a token per 4 characters. An
    agent's request: its `max_output_tokens` (or the default) plus its JSON's length / 4."""
    if isinstance(request, AgentRequest):
        data = request.data
        limit = data.get("max_output_tokens")
        completion = limit if type(limit) is int and limit > 0 else 0
        prompt = len(json.dumps(data.get("input") or data.get("messages") or "", default=str))
        return (completion or settings.CHATMODELS_TOKEN_RESERVATION) + (prompt + 3) // 4
    completion = request.max_tokens or settings.CHATMODELS_TOKEN_RESERVATION
    characters = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            for part in content:
                text = getattr(part, "text", None)
                characters += len(text) if isinstance(text, str) else 0
    return completion * max(1, request.n) + (characters + 3) // 4


def _reservation(parts: tuple[_Part, ...], reserve: int) -> Reservation | None:
    if not reserve:
        return None
    windows = tuple((part.kind, part.window) for part in parts if part.kind != "rpm")
    return Reservation(reserve, windows) if windows else None


def has_limits(key: ApiKeyInfo | None) -> bool:
    """Whether `check` may have to ask the limits store about `key`."""
    return key is not None and bool(_limits_of(key))


def counts_tokens(key: ApiKeyInfo | None) -> bool:
    """Whether `record_tokens` may have to ask the limits store about `key`."""
    return key is not None and (
        key.tokens_per_minute is not None or key.monthly_token_budget is not None
    )


def record_tokens(
    key: ApiKeyInfo | None,
    tokens: int,
    *,
    reservation: Reservation | None = None,
    now: float | None = None,
) -> None:
    """Count the prompt + completion tokens of a finished request against `key`'s limits,
    settling what `check` reserved for it."""
    if not counts_tokens(key) or (tokens <= 0 and reservation is None):
        return
    assert key is not None  # counts_tokens says so
    tokens = max(0, tokens)
    limits = _limits_of(key)
    now = time.time() if now is None else now
    held = _held_for(key.id)
    reserved_in = dict(reservation.windows) if reservation is not None else {}
    reserved = reservation.amount if reservation is not None else 0
    with held.lock:
        held.tokens_per_request = (
            tokens if not held.tokens_per_request else 0.8 * held.tokens_per_request + 0.2 * tokens
        )
        pay_now = False
        for part in held.parts_of(key.id, limits, now):
            if part.kind == "rpm":
                continue
            window = reserved_in.get(part.kind)
            if window is not None and window != part.window:
                # Reserved in a window that has ended: the request counts in that one.
                if tokens != reserved and _expiry(part.kind, window) > now:
                    held.unsettled.append(
                        Increment(
                            part.subject, window, tokens - reserved, _expiry(part.kind, window)
                        )
                    )
                continue
            beyond = tokens - (reserved if window is not None else 0)
            if beyond <= 0:  # the unused part of the reservation, counted in the store
                if held.lease_size(part):
                    part.lease -= beyond  # far from the limit: this process uses it later
                else:
                    part.owed += beyond  # near it: given back now, for every process
                    part.room -= beyond
                    pay_now |= beyond < 0
                continue
            if part.lease >= beyond:  # the usual case, far from the limit
                part.lease -= beyond
                continue
            owed = beyond - part.lease
            part.lease = 0
            part.owed += owed
            part.room -= owed
            # Owing much of what is left would let other processes past the limit: pay now.
            pay_now |= part.owed * LEASE_SHARE > max(part.room, 0)
        if pay_now:
            # (A store that does not answer keeps it owed, for the next round trip.)
            _exchange(key, held, _token_limits_of(key), now, request=False)


def settle(*, idle_for: float = 0.0) -> int:
    """Give the store back this process's unused leases and pay what it owes, for every key
    idle for `idle_for` seconds (0: all). Returns the number of counts changed."""
    changed = 0
    now = time.monotonic()
    for held in list(_holdings.state.values()):
        with held.lock:
            if idle_for and now - held.touched < idle_for:
                continue
            increments = held.take_settlement(time.time())
            if not increments:
                continue
            if apply(increments, []) is None:
                held.unsettled = increments + held.unsettled  # the store is down: keep for later
            else:
                changed += len(increments)
    return changed


def count_request(subject: str, *, limit: int, period: int, now: float | None = None) -> float:
    """Count one request of `subject` against `limit` per `period` seconds (sliding window).

    Returns 0 when it is let through, else the seconds to wait (and it is not counted).
    """
    now = time.time() if now is None else now
    start = _window_start(now, period)
    counts = apply([Increment(subject, start, 1, start + 2 * period)], [(subject, start - period)])
    if counts is None:  # the store does not answer: the global rate is no key's limit
        return 0.0
    (current,), (previous,) = counts
    elapsed = now - start
    if _estimate(previous, current, elapsed, period) <= limit:
        return 0.0
    apply([Increment(subject, start, -1, start + 2 * period)], [])
    return max(_wait(previous, current - 1, limit, elapsed, period), 1.0)


# ---------------------------------------------------------------------------------------------
# What this process holds of each key's counts


@dataclass(slots=True)
class _Part:
    """This process's part of one count of a key (its requests or tokens in one window)."""

    subject: str
    kind: str
    window: int
    lease: int = 0  # counted in the store for `window`, not used here yet
    owed: int = 0  # used here in `window`, not counted in the store yet
    room: float = 0.0  # what the limit had left at the last round trip, less what is owed since

    def increment(self, amount: int) -> Increment:
        """`amount` more (less, when negative) of this part's count in the store."""
        return Increment(self.subject, self.window, amount, _expiry(self.kind, self.window))

    def settlement(self, now: float) -> Increment | None:
        """What squares the store with this part (its debt less its unused lease), if anything
        is to square and its window's count is still kept."""
        if self.owed == self.lease or _expiry(self.kind, self.window) <= now:
            return None
        return self.increment(self.owed - self.lease)


@dataclass(slots=True)
class _Held:
    """What this process holds of one key's counts; `lock` serialises its round trips."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    parts: dict[str, _Part] = field(default_factory=dict)
    unsettled: list[Increment] = field(default_factory=list)  # ended windows' leases and debts
    touched: float = 0.0  # time.monotonic() of the last request
    tokens_per_request: float = 0.0  # a moving average: sizes token leases
    reserve_per_request: float = 0.0  # likewise, of the reservations
    # The parts of the limits last asked for, in their order, all in their windows from
    # `current_from` until `current_until` (found once, not on every request).
    current: tuple[_Part, ...] = ()
    current_limits: tuple[tuple[str, int], ...] = ()
    current_from: float = 0.0
    current_until: float = 0.0

    def part(self, key_id: int, kind: str, now: float) -> _Part:
        """The part of `kind` for the window of `now` (an ended window's part is set aside to
        be settled with the next round trip)."""
        window = _window_of(kind, now)
        part = self.parts.get(kind)
        if part is None:
            part = self.parts[kind] = _Part(_subject(key_id, kind), kind, window)
        elif part.window != window:
            settlement = part.settlement(now)
            if settlement is not None:
                self.unsettled.append(settlement)
            part.window, part.lease, part.owed = window, 0, 0
        return part

    def parts_of(
        self, key_id: int, limits: tuple[tuple[str, int], ...], now: float
    ) -> tuple[_Part, ...]:
        """The parts of `limits`' kinds for the windows of `now`, in the order of `limits`, for
        a request's use (the key is not idle)."""
        self.touched = time.monotonic()
        if self.current_from <= now < self.current_until and limits is self.current_limits:
            return self.current
        parts = tuple(self.part(key_id, kind, now) for kind, _ in limits)
        self.current, self.current_limits = parts, limits
        self.current_from = max(part.window for part in parts)
        self.current_until = min(_window_end(part.kind, part.window) for part in parts)
        return parts

    @staticmethod
    def covers_a_request(parts: tuple[_Part, ...], reserve: int) -> bool:
        """True, and the request and its reservation taken from the leases, when this process's
        leases (of the current windows) let one more request in without asking the store."""
        for part in parts:
            if part.lease < _taken(part, reserve, need=True):
                return False
        for part in parts:
            part.lease -= _taken(part, reserve)
        return True

    def lease_size(self, part: _Part) -> int:
        if part.room < LEASE_SHARE:
            return 0
        # Tokens: what about LEASE_REQUESTS requests use (at least a token each, so a model
        # that reports no usage is not asked about on every request).
        per_request = 1.0 if part.kind == "rpm" else max(1.0, self.tokens_per_request)
        if part.kind != "rpm" and self.reserve_per_request:
            # A lease that cannot hold a reservation is of no use: size it in reservations.
            per_request = max(per_request, self.reserve_per_request)
        most = LEASE_REQUESTS * per_request
        return int(min(most, part.room // LEASE_SHARE))

    def take_settlement(self, now: float) -> list[Increment]:
        """Everything leased and not used, and everything owed, as increments (and forgotten)."""
        increments, self.unsettled = self.unsettled, []
        for part in self.parts.values():
            settlement = part.settlement(now)
            if settlement is not None:
                increments.append(settlement)
            part.lease = part.owed = 0
        return increments


@dataclass(slots=True)
class _Ask:
    """One count in a round trip: what is paid, asked for this request and leased."""

    part: _Part
    limit: int
    this_request: int  # the request (1) or its reservation, counted now (no lease covered it)
    from_lease: int  # what the request took out of the lease held before
    top_up: int  # asked for the lease
    paid: int  # owed tokens paid
    count_at: tuple[str, int]  # where its count is in the answer: ("added" | "read", index)
    covered: bool = False  # the lease held before covered the request
    released: int = 0  # lease given back in this trip
    granted: int = 0


def _taken(part: _Part, reserve: int, *, need: bool = False) -> int:
    """What one request takes of `part` (`need`: what a lease must hold to cover it)."""
    if part.kind == "rpm":
        return 1
    return max(1, reserve) if need else reserve


def _exchange(
    key: ApiKeyInfo,
    held: _Held,
    limits: tuple[tuple[str, int], ...],
    now: float,
    *,
    request: bool,
    reserve: int = 0,
) -> Reservation | None:
    """One round trip for `key` (its lock held): settle ended windows, pay what is owed, count
    this request (`request`) and its reservation, and top up the leases; raise if the request
    is over a limit, or if the store does not answer (unless CHATMODELS_LIMITS_FAIL_OPEN)."""
    reads: list[tuple[str, int]]  # (subject, window)
    asks, increments, reads = [], [], []
    parts = [
        (part, limit)
        for part, (_, limit) in zip(held.parts_of(key.id, limits, now), limits, strict=True)
    ]
    if request and reserve:
        held.reserve_per_request = (
            reserve
            if not held.reserve_per_request
            else 0.8 * held.reserve_per_request + 0.2 * reserve
        )
    settled = held.unsettled
    increments += settled
    held.unsettled = []
    for part, limit in parts:
        wanted = _taken(part, reserve) if request else 0
        covered = request and part.lease >= _taken(part, reserve, need=True)
        from_lease = wanted if covered else 0
        this_request = 0 if covered else wanted
        part.lease -= from_lease
        lease_size = held.lease_size(part)
        # Near the limit a lease this request cannot use is given back, for every process.
        released = part.lease if request and not covered and not lease_size else 0
        part.lease -= released
        top_up = max(0, lease_size - part.lease)
        amount = part.owed + this_request + top_up - released
        if amount:
            count_at = ("added", len(increments))
            increments.append(part.increment(amount))
        else:
            count_at = ("read", len(reads))
            reads.append((part.subject, part.window))
        asks.append(
            _Ask(
                part,
                limit,
                this_request,
                from_lease,
                top_up,
                part.owed,
                count_at,
                covered,
                released,
            )
        )
        if part.kind != "month":
            reads.append((part.subject, part.window - MINUTE))
    counts = apply(increments, reads)
    if counts is None:  # the store did not answer (logged)
        held.unsettled = settled + held.unsettled
        for ask in asks:
            ask.part.lease += ask.from_lease + ask.released
        if not request:
            return None
        if settings.CHATMODELS_LIMITS_FAIL_OPEN:
            return None  # let through, uncounted: what it uses is owed when it ends
        raise LimitsUnavailable(
            "the limits store does not answer, so requests of keys with limits are refused;"
            " retry shortly",
            retry_after=max(1, math.ceil(settings.CHATMODELS_LIMITS_RETRY_SECONDS)),
        )
    added, read = counts
    found = {"added": added, "read": read}
    previous_of = dict(zip(reads, read, strict=True))
    refusal, give_back = None, []
    for ask in asks:
        part = ask.part
        part.owed -= ask.paid
        count = found[ask.count_at[0]][ask.count_at[1]]
        before = count - ask.this_request - ask.top_up  # all but what this trip asked for
        previous = previous_of.get((part.subject, part.window - MINUTE), 0)
        elapsed = now - part.window
        room = ask.limit - _estimate_of(part.kind, previous, before, elapsed)
        # A request (and its reservation) gets in while there is room: what concurrent
        # requests reserve goes past a limit by at most one reservation.
        fits = ask.covered or (room >= 1 if part.kind == "rpm" else room > 0)
        ask.granted = min(ask.top_up, max(0, math.floor(room) - ask.this_request))
        part.room = room - ask.this_request - ask.granted
        if request and not fits and refusal is None:
            refusal = _refusal(key, part.kind, ask.limit, previous, before, now)
    for ask in asks:
        part = ask.part
        kept = 0 if refusal else ask.granted
        returned = ask.top_up - kept + (ask.this_request if refusal else 0)
        part.lease += kept + (ask.from_lease if refusal else 0)
        if returned:
            give_back.append(part.increment(-returned))
    if give_back:
        apply(give_back, [])
    if refusal is not None:
        raise refusal
    return _reservation(tuple(ask.part for ask in asks), reserve) if request else None


def _refusal(
    key: ApiKeyInfo, kind: str, limit: int, previous: int, current: int, now: float
) -> ChatModelsError:
    elapsed = now - _window_start(now, MINUTE)
    if kind == "month":
        resets = _next_month_start(now)
        return QuotaExhausted(
            f"API key '{key.name}' has used its monthly budget of {limit} tokens; it renews"
            f" on {datetime.fromtimestamp(resets, timezone.utc):%Y-%m-%d} (UTC)",
            retry_after=_seconds(resets - now),
        )
    wait = _seconds(_wait(previous, current, limit, elapsed, MINUTE))
    unit = "requests" if kind == "rpm" else "tokens"
    return RateLimited(
        f"API key '{key.name}' is over its limit of {limit} {unit} per minute; retry in {wait} s",
        retry_after=wait,
    )


def _held_for(key_id: int) -> _Held:
    holdings = _holdings
    held = holdings.state.get(key_id)
    if held is None:
        with holdings.lock:
            held = holdings.state.setdefault(key_id, _Held())
        if not holdings.started:
            holdings.start()
    return held


def _settle_idle() -> None:
    try:
        settle(idle_for=_holdings.interval)
    finally:
        if not connection.in_atomic_block:
            connection.close()  # this thread's own connection (the database store)


def settle_at_exit() -> None:
    try:
        settle()
    except Exception:
        logger.exception("limits: settling the leases at exit failed")


# What this process holds of each key's counts, by key id; the keys left idle are settled every
# CHATMODELS_LIMITS_SETTLE_SECONDS (none when 0), all of them at exit. A forked child holds
# nothing: what the parent leased stays the parent's to settle.
_holdings: PerProcess[dict[int, _Held]] = PerProcess(
    "limits",
    dict,
    task=_settle_idle,
    every=lambda: settings.CHATMODELS_LIMITS_SETTLE_SECONDS,
    at_exit=settle_at_exit,
)


def forget() -> None:
    """Drop what this process holds without settling it (tests: a fresh start each)."""
    with _holdings.lock:
        _holdings.state.clear()


# ---------------------------------------------------------------------------------------------
# Windows


def _limits_of(key: ApiKeyInfo) -> tuple[tuple[str, int], ...]:
    """The key's limits as (kind, limit) pairs, requests first (the same tuple for the same
    limits: made once)."""
    return _limits(key.requests_per_minute, key.tokens_per_minute, key.monthly_token_budget)


def _token_limits_of(key: ApiKeyInfo) -> tuple[tuple[str, int], ...]:
    return _limits(None, key.tokens_per_minute, key.monthly_token_budget)


@functools.lru_cache(maxsize=4096)
def _limits(rpm: int | None, tpm: int | None, month: int | None) -> tuple[tuple[str, int], ...]:
    pairs = (("rpm", rpm), ("tpm", tpm), ("month", month))
    return tuple((kind, limit) for kind, limit in pairs if limit is not None)


def _subject(key_id: int, kind: str) -> str:
    return f"key:{key_id}:{kind}"


def _window_of(kind: str, now: float) -> int:
    if kind != "month":
        return _window_start(now, MINUTE)
    global _last_month
    start, end = _last_month
    if not start <= now < end:  # date arithmetic once a month, not on every request
        start, end = _last_month = (_month_start(now), _next_month_start(now))
    return start


_last_month: tuple[int, int] = (0, 0)  # the month last asked for: its start and the next one's


def _window_end(kind: str, window: int) -> int:
    return _next_month_start(window) if kind == "month" else window + MINUTE


def _expiry(kind: str, window: int) -> int:
    if kind == "month":
        return _next_month_start(window) + MINUTE
    return window + MINUTE + _KEEP_AFTER


def _estimate_of(kind: str, previous: int, current: int, elapsed: float) -> float:
    return current if kind == "month" else _estimate(previous, current, elapsed, MINUTE)


def _window_start(now: float, period: int) -> int:
    return int(now // period) * period


def _month_start(now: float) -> int:
    day = datetime.fromtimestamp(now, timezone.utc)
    return int(datetime(day.year, day.month, 1, tzinfo=timezone.utc).timestamp())


def _next_month_start(now: float) -> int:
    day = datetime.fromtimestamp(now, timezone.utc)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp())


def _estimate(previous: int, current: int, elapsed: float, period: int) -> float:
    """The count over the last `period` seconds: the part of the previous window still inside
    it (assuming its requests were spread evenly) plus the current window's."""
    return previous * (period - elapsed) / period + current


def _wait(previous: int, current: int, limit: int, elapsed: float, period: int) -> float:
    """Seconds until one more (request or token) fits: estimate + 1 <= limit."""
    room = limit - current - 1
    if room >= 0:
        if previous <= 0:
            return 0.0
        # The previous window's weight has to fall to `room`.
        return max(0.0, period * (1 - room / previous) - elapsed)
    if limit <= 0:
        return period - elapsed  # nothing is ever let through: say the window's end
    # Not in this window: in the next one, this window's count is the previous one.
    return (period - elapsed) + max(0.0, period * (1 - (limit - 1) / current))


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
