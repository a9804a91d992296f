"""A discrete-event model of callme's dispatch: one run in detail, and a burst of runs over minutes.

``simulate_run`` follows one dispatcher run as ``callme.dispatch`` makes it, event by event: the
shard leases, the shards read page by page (4 readers), each page's entries called as it comes, the
readers waiting while ``read_ahead`` entries are read and not yet started (so the next page is
fetched while the last one is called), and stopping at the window; a pool of callers (``concurrency``) and a
pool of writers (16), calls started only while fewer than ``concurrency`` calls and fewer than
``concurrency`` outcome writes are pending, no call started after the run's window (40 s), an entry
past its ``max_delay`` written as skipped without a call. Every step's CPU runs on one core, first
come first served: the interpreter lock makes a run one core, and a step (a call, a write, a page
parsed) holds it for about a millisecond, less than Python's 5 ms switch interval. Storage is either
a service with a latency and per-partition limits (DynamoDB: a token bucket per partition, throttled
requests retried as botocore's standard mode and the engine's record loop retry them) or one
server taking requests in turn (the local stack's embedded DynamoDB).

``simulate_burst`` follows a burst of entries all due at second 0 of one minute, minute after
minute until every one is done: EventBridge Scheduler's tick, the coordinator's look at every shard,
one asynchronous invocation per busy shard, or, for a shard with more than ``split_at`` due, about
one per ``split_at`` due (at most one per busy slice), each started warm or cold within the
function's concurrency limit, each run waiting for its slices' leases while the previous one still
holds them, and what a run leaves pending going to the next minute's run.

Aggregated rather than per entry: the runs of a burst whose inputs are the same (same pending
entries, window, flags) are the same run shifted in time, so each distinct run is simulated once
and reused (the shards and their slices are taken as holding equal shares of the entries); each
slice has an index partition of its own (callme.ports.due_slot), and all runs share the table's.
Not modelled: failures
and crashes, callbacks that fail and are retried, the api's writes during the burst, DynamoDB
splitting partitions under sustained load, network time between the dispatcher and the endpoints
other than the endpoint latency.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import accumulate
from statistics import NormalDist
from typing import Any

# botocore's standard retry mode, as the repository configures it (callme.repository.connect):
SDK_ATTEMPTS = 4  # attempts of one request
SDK_THROTTLE_BASE = 1.0  # seconds; the n-th retry of a throttled request waits rand() * base * 2^(n-1)
SDK_MAX_BACKOFF = 20.0
SDK_QUOTA = 500  # retry quota of one client: a throttled retry takes 5, a first-try success gives 1 back
SDK_THROTTLE_COST = 5
RECORD_BACKOFF = 0.2  # callme.dispatch._record sleeps 0.2 * 2^attempt between its own attempts
LEASE_POLL = 0.5  # DispatchEngine.run polls a held lease every 0.5 s
ASYNC_RETRY_CAP = 300.0  # Lambda retries a throttled asynchronous invocation, 1 s doubling to 5 min
BIN = 0.1  # seconds per bin of the write-demand histograms
HOST_BASE = 1 << 20  # an entry's code: endpoint group * HOST_BASE + host


@dataclass(frozen=True)
class Latency:
    """A latency: lognormal with this median and shape ``sigma`` (p99 = median * e^(2.33 sigma)),
    or exactly ``median`` when ``sigma`` is 0."""

    median: float
    sigma: float = 0.0

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """Draws from ``rng``: one of 2,048 equally likely quantiles (fast, and fine to p99.9)."""
        if self.sigma <= 0 or self.median <= 0:
            value = max(self.median, 0.0)
            return lambda: value
        table = _lognormal_quantiles(self.median, self.sigma)
        draw, size = rng.random, len(table)
        return lambda: table[int(draw() * size)]

    def describe(self) -> str:
        text = _seconds(self.median)
        return text if self.sigma <= 0 else f"lognormal, median {text}, sigma {self.sigma:g}"


@lru_cache
def _lognormal_quantiles(median: float, sigma: float, size: int = 2048) -> tuple[float, ...]:
    normal = NormalDist()
    return tuple(median * math.exp(sigma * normal.inv_cdf((i + 0.5) / size)) for i in range(size))


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


@dataclass(frozen=True)
class Endpoints:
    """A share of the due entries, the latency of their endpoints, and over how many hosts."""

    share: float
    latency: Latency
    hosts: int = 1000


@dataclass(frozen=True)
class Workload:
    """``entries`` due at second 0 of one minute."""

    entries: int
    endpoints: tuple[Endpoints, ...]
    max_delay_minutes: int = 10

    def counts(self, total: int) -> tuple[int, ...]:
        """``total`` entries split over the endpoint groups by their shares (largest remainder)."""
        raw = [total * e.share / sum(x.share for x in self.endpoints) for e in self.endpoints]
        counts = [int(r) for r in raw]
        for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: total - sum(counts)]:
            counts[i] += 1
        return tuple(counts)


@dataclass(frozen=True)
class Cpu:
    """CPU of each step, in seconds of the core it was measured on; ``scale`` stretches it to the
    core the run has (1,769 / memory MB in Lambda: a 1,024 MB function has 0.58 of a vCPU)."""

    call: float  # one callback: the loop's start of it and the HTTP call
    write: float  # one outcome: the write and the loop's settling of it
    read_item: float  # one entry read from the index (botocore parsing it)
    read_page: float = 0.0  # one Query request, whatever it holds
    scale: float = 1.0


@dataclass(frozen=True)
class Storage:
    """DynamoDB as the run sees it."""

    write: Latency  # a PutItem's round trip (outside any server queue)
    page: Latency  # a Query page's round trip, before its items
    page_item: float  # seconds added to a page per item in it
    batch_get: Latency  # one BatchGetItem of up to 100 entries (strongly consistent)
    lease: Latency  # a lease write's round trip
    item_bytes: int = 609
    # The local stack: one server (one core) handling requests in turn; 0 for DynamoDB itself.
    server_write: float = 0.0
    server_read_item: float = 0.0

    @property
    def page_items(self) -> int:
        return max(1, (1 << 20) // self.item_bytes)  # a Query page stops at 1 MB


@dataclass(frozen=True)
class Limits:
    """What one run may use of the partitions it shares; None is no limit (the local stack)."""

    index_write: float | None = None  # write units/s of its slice's index partition
    table_write: float | None = None
    index_read: float | None = None  # read units/s
    table_read: float | None = None


@dataclass(frozen=True)
class RunSpec:
    """One run: what it dispatches and with what."""

    shards: tuple[tuple[int, ...], ...]  # per shard of the run, its pending entries per endpoint group
    endpoints: tuple[Endpoints, ...]
    cpu: Cpu
    storage: Storage
    limits: Limits = Limits()
    concurrency: int = 64
    writers: int = 16
    readers: int = 4
    per_host_share: float = 1.0
    window: float = 40.0  # no call starts later than this after the run began
    call_budget: float = 15.0
    skip_after: float | None = None  # from then on an entry is skipped (its max_delay has passed)
    deadline: float | None = None  # Lambda's timeout: the run is cut there, its lease left to expire
    consistent: bool = False  # read the entries again, strongly consistent, before calling them
    read_before_call: bool = False  # read each entry again (batched, strongly consistent) just before its call
    read_ahead: int = 2000  # entries read ahead of the calls at most; 0: a shard read whole first
    record_attempts: int = 4
    seed: int = 0


@dataclass
class RunResult:
    """One run's outcome; times are seconds from the run's start (its first lease write)."""

    calls: list[float]  # when each call was sent, sorted
    records: list[float]  # when each final outcome was recorded, sorted
    leftover: tuple[int, ...]  # per endpoint group: deferred or unrecorded, still pending
    due: int = 0
    skipped: int = 0
    unrecorded: int = 0  # called, outcome not written: pending again, to be called again
    deferred: int = 0
    throttled_writes: int = 0
    throttled_reads: int = 0
    demand: dict[int, int] = field(default_factory=dict)  # write requests per BIN, throttled ones too
    end: float = 0.0
    timed_out: bool = False  # cut by the deadline: its lease was not released
    cpu_busy: float = 0.0
    read_units: float = 0.0
    consistent_read_units: float = 0.0


_READ_REQUEST, _READ_ANSWER, _CALL_END, _WRITE_TRY, _WRITE_END, _WRITE_LOST, _READ_PARSE = range(7)
# A page is parsed in steps of this much CPU: the interpreter switches threads every 5 ms, so the
# calls go on while a reader parses a large page.
SWITCH_INTERVAL = 0.005


class _Bucket:
    """A token bucket: ``rate`` units a second, holding at most one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = 0.0

    def has(self, now: float, units: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens >= units


class _Run:
    """The event loop of one run (see the module's docstring)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        rng = random.Random(spec.seed)
        self.rng = rng
        self.call_latency = [e.latency.sampler(rng) for e in spec.endpoints]
        self.write_latency = spec.storage.write.sampler(rng)
        self.page_latency = spec.storage.page.sampler(rng)
        self.batch_latency = spec.storage.batch_get.sampler(rng)
        self.lease_latency = spec.storage.lease.sampler(rng)
        scale = spec.cpu.scale
        self.cpu_call = spec.cpu.call * scale
        self.cpu_write = spec.cpu.write * scale
        self.cpu_item = spec.cpu.read_item * scale
        self.cpu_page = spec.cpu.read_page * scale
        self.parse_step = max(1, int(SWITCH_INTERVAL / self.cpu_item)) if self.cpu_item > 0 else 1 << 30
        self.heap: list[tuple[float, int, int, Any]] = []
        self.order = 0
        self.cpu_free = 0.0
        self.cpu_busy = 0.0
        self.server_free = 0.0
        self.ready: deque[int] = deque()
        self.write_queue: deque[int] = deque()
        self.calls = 0
        self.writes = 0
        self.writers_busy = 0
        cap = max(1, math.floor(spec.per_host_share * spec.concurrency))
        self.host_cap = cap if cap < spec.concurrency else 0
        self.in_flight: dict[int, int] = {}
        self.parked: dict[int, deque[int]] = {}
        self.parked_count = 0
        self.quota = SDK_QUOTA
        limits = spec.limits
        self.index_write = _Bucket(limits.index_write) if limits.index_write is not None else None
        self.table_write = _Bucket(limits.table_write) if limits.table_write is not None else None
        self.index_read = _Bucket(limits.index_read) if limits.index_read is not None else None
        self.table_read = _Bucket(limits.table_read) if limits.table_read is not None else None
        self.limited = self.index_write is not None or self.table_write is not None
        self.result = RunResult([], [], tuple(0 for _ in spec.endpoints))
        self.recorded = [0] * len(spec.endpoints)
        self.streaming = spec.read_ahead > 0 and not spec.consistent
        self.ahead = spec.read_ahead + spec.concurrency  # the engine's backlog and the loop's own queue
        self.unread: dict[int, deque[int]] = {}  # a shard's entries not read yet, when streaming
        self.blocked: list[tuple[int, int]] = []  # readers waiting for room: (shard, entries left)

    def push(self, at: float, kind: int, payload: Any) -> None:
        self.order += 1
        heapq.heappush(self.heap, (at, self.order, kind, payload))

    def burst(self, now: float, seconds: float) -> float:
        """Run ``seconds`` of CPU from ``now`` on the run's one core; when it is done."""
        start = now if now > self.cpu_free else self.cpu_free
        self.cpu_free = start + seconds
        self.cpu_busy += seconds
        return self.cpu_free

    def serve(self, now: float, seconds: float) -> float:
        """The local server: requests in turn, ``seconds`` each; when this one is answered."""
        start = now if now > self.server_free else self.server_free
        self.server_free = start + seconds
        return self.server_free

    # -- the run ---------------------------------------------------------------------------

    def go(self) -> RunResult:
        spec = self.spec
        now = 0.0
        for _ in spec.shards:  # leases, one shard after another
            now = self.serve(now, spec.storage.server_write) if spec.storage.server_write else now
            now += self.lease_latency()
        self.stop = spec.window
        readers = min(len(spec.shards), spec.readers)
        self.shard_queue = deque(range(len(spec.shards)))
        for _ in range(readers):
            self.next_shard(now)
        self.loop()
        result = self.result
        # What was not recorded stays pending: deferred, unrecorded, or cut short by the deadline.
        totals = [sum(counts) for counts in zip(*spec.shards, strict=True)] if spec.shards else []
        result.leftover = tuple(n - done for n, done in zip(totals, self.recorded, strict=True))
        result.deferred = len(self.ready) + self.parked_count
        if result.timed_out:
            end = spec.deadline or 0.0
        else:
            end = max(self.cpu_free, result.records[-1] if result.records else 0.0, now)
            for _ in spec.shards:  # release the leases
                end = self.serve(end, spec.storage.server_write) if spec.storage.server_write else end
                end += self.lease_latency()
        result.end = end
        result.cpu_busy = self.cpu_busy
        result.calls.sort()
        result.records.sort()
        return result

    def loop(self) -> None:
        heap = self.heap
        pop = heapq.heappop
        deadline = math.inf if self.spec.deadline is None else self.spec.deadline
        while heap:
            now, _, kind, payload = pop(heap)
            if now > deadline:
                self.result.timed_out = True
                self.result.calls = [t for t in self.result.calls if t <= deadline]
                return
            if kind == _CALL_END:
                self.call_ended(now, payload)
            elif kind == _WRITE_END:
                self.write_ended(now, payload, recorded=True)
            elif kind == _WRITE_TRY:
                self.write_try(now, *payload)
            elif kind == _WRITE_LOST:
                self.write_ended(now, payload, recorded=False)
            elif kind == _READ_REQUEST:
                self.read_request(now, *payload)
            elif kind == _READ_PARSE:
                self.parse(now, *payload)
            else:
                self.read_answer(now, *payload)

    # -- reading ---------------------------------------------------------------------------

    def next_shard(self, now: float) -> None:
        if self.shard_queue:
            shard = self.shard_queue.popleft()
            total = sum(self.spec.shards[shard])
            self.push(now, _READ_REQUEST, (shard, total, False))

    def read_request(self, now: float, shard: int, left: int, consistent: bool) -> None:
        """Ask for the next page (or batch of 100 consistent reads) of a shard's entries."""
        if self.streaming and now >= self.stop:
            return  # the run stopped: the rest stays pending, unread
        storage = self.spec.storage
        items = min(left, 100 if consistent else storage.page_items)
        if consistent:
            units = float(items)  # strongly consistent, under 4 KB an item
            bucket = self.table_read
            self.result.consistent_read_units += units
        else:
            units = max(0.5, math.ceil(items * storage.item_bytes / 4096) / 2)  # eventually consistent
            bucket = self.index_read
            self.result.read_units += units
        if bucket is not None and not bucket.has(now, units):
            self.result.throttled_reads += 1
            self.push(
                now + self.page_latency() + self.rng.random() * SDK_THROTTLE_BASE,
                _READ_REQUEST,
                (shard, left, consistent),
            )
            return
        if bucket is not None:
            bucket.tokens -= units
        if storage.server_read_item:
            answered = self.serve(now, items * storage.server_read_item)
        elif consistent:
            answered = now + self.batch_latency()
        else:
            answered = now + self.page_latency() + items * storage.page_item
        self.push(answered, _READ_ANSWER, (shard, left, consistent, items))

    def read_answer(self, now: float, shard: int, left: int, consistent: bool, items: int) -> None:
        if self.streaming:
            self.parse(now, shard, left, items, items)
            return
        parsed = self.burst(now, self.cpu_page + items * self.cpu_item)
        left -= items
        if left > 0:
            self.push(parsed, _READ_REQUEST, (shard, left, consistent))
        elif self.spec.consistent and not consistent and sum(self.spec.shards[shard]) > 0:
            self.push(parsed, _READ_REQUEST, (shard, sum(self.spec.shards[shard]), True))
        else:
            self.take(parsed, shard)

    def codes_of(self, shard: int) -> list[int]:
        """A shard's entries in the index's order, each as its host's code."""
        counts = self.spec.shards[shard]
        codes: list[int] = []
        for group, count in enumerate(counts):
            hosts = list(range(group * HOST_BASE, group * HOST_BASE + self.spec.endpoints[group].hosts))
            codes.extend((hosts * (count // len(hosts) + 1))[:count])  # hosts in turn
        if len([c for c in counts if c]) > 1:
            self.rng.shuffle(codes)
        return codes

    def take(self, now: float, shard: int) -> None:
        """A shard's entries are read: they are ready to be called, in the index's order."""
        codes = self.codes_of(shard)
        self.result.due += len(codes)
        self.ready.extend(codes)
        self.next_shard(now)  # the reader thread goes on with the next shard
        self.start_ready(now)

    def parse(self, now: float, shard: int, left: int, items: int, unparsed: int) -> None:
        """Parse a page a switch interval at a time, the calls' CPU in between; its entries are
        ready once the whole page is parsed (botocore answers a page at once)."""
        step = min(unparsed, self.parse_step)
        parsed = self.burst(now, step * self.cpu_item + (self.cpu_page if unparsed == items else 0.0))
        if unparsed > step:
            self.push(parsed, _READ_PARSE, (shard, left, items, unparsed - step))
        else:
            self.stream(parsed, shard, items, left - items)

    def stream(self, now: float, shard: int, items: int, left: int) -> None:
        """A page is read: its entries are ready to be called at once; the reader goes on with the
        next page, or waits while the entries read ahead of the calls fill the backlog."""
        unread = self.unread.get(shard)
        if unread is None:
            unread = self.unread[shard] = deque(self.codes_of(shard))
        self.ready.extend(unread.popleft() for _ in range(items))
        self.result.due += items
        if left <= 0:
            self.next_shard(now)
        elif len(self.ready) >= self.ahead:
            self.blocked.append((shard, left))
        else:
            self.push(now, _READ_REQUEST, (shard, left, False))
        self.start_ready(now)

    def unblock(self, now: float) -> None:
        """Readers waiting for room go on, once the calls have taken entries off the backlog."""
        if self.blocked and len(self.ready) < self.ahead:
            for shard, left in self.blocked:
                self.push(now, _READ_REQUEST, (shard, left, False))
            self.blocked.clear()

    # -- calling and recording -------------------------------------------------------------

    def start_ready(self, now: float) -> None:
        """Start calls while there is room (the engine's ``_start_ready``); the hot path, so the
        CPU queue and the event heap are used inline."""
        ready = self.ready
        if now >= self.stop or not ready:
            self.unblock(now)
            return
        spec = self.spec
        limit, budget, skip_after, host_cap = spec.concurrency, spec.call_budget, spec.skip_after, self.host_cap
        latency, cpu_call, heap, sent_at = self.call_latency, self.cpu_call, self.heap, self.result.calls
        calls, cpu_free = self.calls, self.cpu_free
        # Reading each entry just before its call: its item parsed (and its share of the request,
        # which holds about as many entries as calls start together), then a BatchGetItem's round
        # trip (none on the local stack, whose measured pace per outcome includes its reads).
        read_cpu = self.cpu_item + self.cpu_page / limit if spec.read_before_call else 0.0
        while ready and calls < limit and self.writes < limit:
            code = ready.popleft()
            if skip_after is not None and now >= skip_after:
                self.result.skipped += 1
                self.writes += 1
                self.write_queue.append(code)
                continue
            if host_cap:
                host_calls = self.in_flight.get(code, 0)
                if host_calls >= host_cap:
                    self.parked.setdefault(code, deque()).append(code)
                    self.parked_count += 1
                    continue
                self.in_flight[code] = host_calls + 1
            calls += 1
            cpu_free = (now if now > cpu_free else cpu_free) + cpu_call + read_cpu
            sent = cpu_free
            if read_cpu:
                sent = cpu_free + self.batch_latency()
                self.result.consistent_read_units += 1  # an entry under 4 KB
            sent_at.append(sent)
            self.order += 1
            heapq.heappush(heap, (sent + min(latency[code // HOST_BASE](), budget), self.order, _CALL_END, code))
        self.cpu_busy += (cpu_call + read_cpu) * (calls - self.calls)
        self.calls, self.cpu_free = calls, cpu_free
        if self.write_queue:
            self.start_writes(now)
        if self.blocked:
            self.unblock(now)

    def call_ended(self, now: float, code: int) -> None:
        self.calls -= 1
        if self.host_cap:
            self.in_flight[code] -= 1
            parked = self.parked.get(code)
            if parked:
                self.ready.appendleft(parked.popleft())
                self.parked_count -= 1
        self.writes += 1
        self.write_queue.append(code)
        self.start_writes(now)
        self.start_ready(now)

    def start_writes(self, now: float) -> None:
        queue = self.write_queue
        storage = self.spec.storage
        while queue and self.writers_busy < self.spec.writers:
            code = queue.popleft()
            self.writers_busy += 1
            sent = self.burst(now, self.cpu_write)
            if storage.server_write:
                self.push(self.serve(sent, storage.server_write) + self.write_latency(), _WRITE_END, code)
            elif not self.limited:
                self.count_demand(sent)
                self.push(sent + self.write_latency(), _WRITE_END, code)
            else:
                self.push(sent, _WRITE_TRY, (code, 1, 1))

    def count_demand(self, at: float) -> None:
        demand = self.result.demand
        slot = int(at / BIN)
        demand[slot] = demand.get(slot, 0) + 1

    def write_try(self, now: float, code: int, attempt: int, record_attempt: int) -> None:
        """A write reaches DynamoDB: it takes a unit of its index partition and of its table
        partition, or it is throttled and retried as botocore, then the engine, retry it."""
        self.count_demand(now)
        answered = now + self.write_latency()
        index, table = self.index_write, self.table_write
        if (index is None or index.has(now, 1)) and (table is None or table.has(now, 1)):
            if index is not None:
                index.tokens -= 1
            if table is not None:
                table.tokens -= 1
            self.quota = min(SDK_QUOTA, self.quota + (1 if attempt == 1 else SDK_THROTTLE_COST))
            self.push(answered, _WRITE_END, code)
            return
        self.result.throttled_writes += 1
        if attempt < SDK_ATTEMPTS and self.quota >= SDK_THROTTLE_COST:
            self.quota -= SDK_THROTTLE_COST
            wait = self.rng.random() * min(SDK_THROTTLE_BASE * 2 ** (attempt - 1), SDK_MAX_BACKOFF)
            self.push(answered + wait, _WRITE_TRY, (code, attempt + 1, record_attempt))
        elif record_attempt < self.spec.record_attempts:
            wait = RECORD_BACKOFF * 2 ** (record_attempt - 1)
            self.push(answered + wait, _WRITE_TRY, (code, 1, record_attempt + 1))
        else:
            self.push(answered, _WRITE_LOST, code)

    def write_ended(self, now: float, code: int, recorded: bool) -> None:
        self.writers_busy -= 1
        self.writes -= 1
        if recorded:
            self.result.records.append(now)
            self.recorded[code // HOST_BASE] += 1
        else:
            self.result.unrecorded += 1
        if self.write_queue:
            self.start_writes(now)
        self.start_ready(now)


def simulate_run(spec: RunSpec) -> RunResult:
    """One dispatcher run, event by event."""
    return _Run(spec).go()


# -- a burst, minute after minute -------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """How dispatch is built and deployed: what the engineers changing it choose."""

    shards: int = 8  # shards of the due index (template DueShards)
    # Slices per shard (template DispatchSlices), each a partition of the index of its own with its
    # own lease: a shard with more than ``split_at`` entries due gets one run per slice, a lighter
    # one a single run over all its slices.
    slices: int = 1
    split_at: int = 1000
    concurrency: int = 64  # calls in flight per run (DispatchConcurrency)
    writers: int = 16
    readers: int = 4
    read_ahead: int = 2000  # entries read ahead of the calls at most (READ_AHEAD); 0: all first
    per_host_share: float = 1.0  # of a run's concurrency one callback host may take; 1: no limit
    # re-read entries consistently: "before_call" (each, just before its call, as callme does), or all
    # of a shard's before any call: "always", after a "recent" release, or "never"
    consistent_read: str = "before_call"
    lease_renew_seconds: float = 4.0  # a short lease renewed this often (a write each); 0: one long lease
    fanout_parallelism: int = 10  # asynchronous invocations the coordinator makes at once (INVOKERS)
    peekers: int = 8  # shards the coordinator looks at at once (PEEKERS)
    reserved_concurrency: int = 0  # the dispatcher's (DispatcherReservedConcurrency); 0: the account's
    memory_mb: int = 1024
    timeout: float = 75.0
    run_seconds: float = 40.0
    call_budget: float = 15.0
    lease_seconds: float = 25.0
    lease_wait: float = 25.0
    fresh_release: float = 10.0
    record_attempts: int = 4
    table_write_units: float = 4000.0  # warm throughput: what DynamoDB serves at once (new on-demand)
    index_write_units: float = 4000.0
    table_read_units: float = 12000.0
    index_read_units: float = 12000.0

    @property
    def runs(self) -> int:
        return self.shards * self.slices

    def label(self) -> str:
        return f"{self.shards} shards x {self.slices} slices, concurrency {self.concurrency}"


@dataclass(frozen=True)
class Platform:
    """AWS around the runs; figures that are assumed are named so where they are set."""

    scheduler_delay: Latency  # EventBridge Scheduler's tick, after second 0
    invoke: float  # one asynchronous Invoke call made by the coordinator
    async_start: Latency  # from an accepted asynchronous invocation to its handler starting
    cold_start: float  # a new execution environment: sandbox, runtime, the handler's imports
    peek: Latency  # the coordinator's one-item Query per shard
    account_concurrency: int = 1000
    warm_environments: int | None = None  # warm at the burst's first tick; None: one per shard + 1
    partition_write_units: float = 1000.0
    partition_read_units: float = 3000.0
    vcpu_mb: int = 1769  # a full vCPU's memory size


@dataclass
class RunRecord:
    """A run as it happened in a burst."""

    chain: tuple[tuple[int, int], ...]  # the (shard, slice) it holds: one, or all the busy ones of a shard
    minute: int
    invoked: float  # its asynchronous invocation was accepted
    executing: float  # it took an execution environment (a cold start follows, if any)
    started: float  # its handler started
    leased: float  # it took the lease (its result's times count from here)
    ended: float
    cold: bool
    key: tuple[Any, ...] | None  # None: the lease stayed taken, the run gave up


@dataclass
class Burst:
    """A burst's outcome: the runs and what they did, ready to be summed up."""

    design: Design
    workload: Workload
    runs: list[RunRecord]
    results: dict[tuple[Any, ...], RunResult]
    coordinators: list[tuple[float, float, bool]]  # start, end, cold
    left: int  # entries still pending when the simulation stopped
    minutes: int  # minutes with a run
    horizon: float = 0.0  # seconds simulated

    def instances(self) -> Iterable[tuple[RunRecord, RunResult]]:
        for run in self.runs:
            if run.key is not None:
                yield run, self.results[run.key]


def partition_limits(design: Design, platform: Platform) -> Limits:
    """Each run's share of what it writes to: a slice's index partition is its own (a slot of the
    index: callme.ports.due_slot), the table is shared by every run; neither more than its warm
    throughput allows."""
    return Limits(
        index_write=min(platform.partition_write_units, design.index_write_units / design.runs),
        table_write=design.table_write_units / design.runs,
        index_read=min(platform.partition_read_units, design.index_read_units / design.runs),
        table_read=design.table_read_units / design.runs,
    )


@dataclass
class _Chain:
    """One shard (or slice of a shard): its pending entries and its lease."""

    pending: tuple[int, ...]
    lease_free_at: float = -math.inf
    released_at: float | None = None
    running: bool = False


def simulate_burst(
    design: Design,
    platform: Platform,
    template: RunSpec,
    workload: Workload,
    seed: int = 1,
    horizon_minutes: int | None = None,
) -> Burst:
    """``workload.entries`` due at second 0 of minute 0, dispatched minute after minute, until none
    is left or two minutes after their ``max_delay`` (from then on every run only skips entries).

    ``template`` carries the run's CPU, storage and endpoints; the design's concurrency, pools,
    window and limits are put into it for each run.
    """
    horizon = workload.max_delay_minutes + 2 if horizon_minutes is None else horizon_minutes
    return _Burst(design, platform, template, workload, seed).go(horizon)


class _Burst:
    """The invocations of a burst, event by event; each run's inside is ``simulate_run``'s."""

    def __init__(self, design: Design, platform: Platform, template: RunSpec, workload: Workload, seed: int) -> None:
        self.design, self.platform, self.workload, self.seed = design, platform, workload, seed
        rng = random.Random(seed)
        self.scheduler_delay = platform.scheduler_delay.sampler(rng)
        self.async_start = platform.async_start.sampler(rng)
        self.peek = platform.peek.sampler(rng)
        self.page_item = template.storage.page_item
        self.limit = design.reserved_concurrency or platform.account_concurrency
        self.window = min(design.run_seconds, design.timeout - design.call_budget - 2)
        self.deadline = workload.max_delay_minutes * 60.0
        self.template = replace(
            template,
            endpoints=workload.endpoints,
            cpu=replace(template.cpu, scale=platform.vcpu_mb / min(design.memory_mb, platform.vcpu_mb)),
            limits=partition_limits(design, platform),
            concurrency=design.concurrency,
            writers=min(design.writers, design.concurrency),
            readers=design.readers,
            read_ahead=design.read_ahead,
            per_host_share=design.per_host_share,
            call_budget=design.call_budget,
            record_attempts=design.record_attempts,
            read_before_call=design.consistent_read == "before_call",
        )
        self.chains: dict[tuple[int, int], _Chain] = {}
        for shard in range(design.shards):
            in_shard = [_share(n, design.shards, shard) for n in workload.counts(workload.entries)]
            for part in range(design.slices):
                self.chains[(shard, part)] = _Chain(tuple(_share(n, design.slices, part) for n in in_shard))
        self.results: dict[tuple[Any, ...], RunResult] = {}
        self.runs: list[RunRecord] = []
        self.coordinators: list[tuple[float, float, bool]] = []
        self.warm = design.shards + 1 if platform.warm_environments is None else platform.warm_environments
        self.executing = 0
        self.events: list[tuple[float, int, str, Any]] = []
        self.order = 0

    def push(self, at: float, kind: str, payload: Any) -> None:
        self.order += 1
        heapq.heappush(self.events, (at, self.order, kind, payload))

    def go(self, horizon: int) -> Burst:
        """Tick by tick until ``horizon`` minutes have passed or nothing is left to do."""
        for minute in range(horizon):
            self.push(60.0 * minute + self.scheduler_delay(), "tick", minute)
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            if kind == "tick":
                if not self.tick(now, payload):
                    break
            elif kind == "done":
                self.executing -= 1
                self.warm += 1
            else:
                self.invoke(now, *payload)
        left = sum(sum(c.pending) for c in self.chains.values())
        minutes = 1 + max((r.minute for r in self.runs), default=0)
        ended = max([60.0 * horizon, *(run.ended for run in self.runs)]) if left else 0.0
        return Burst(self.design, self.workload, self.runs, self.results, self.coordinators, left, minutes, ended)

    def environment(self) -> bool:
        """Take an execution environment: a warm one if any is free; whether it starts cold."""
        cold = self.warm <= 0
        if not cold:
            self.warm -= 1
        self.executing += 1
        return cold

    def tick(self, now: float, minute: int) -> bool:
        """The scheduled invocation: look at every shard (``peekers`` at a time, a shard's slices
        one after another, counting a sliced shard's due entries up to ``split_at``), then invoke
        one run over all the busy slices of a shard with at most ``split_at`` due, and about one
        run per ``split_at`` due (at most one per busy slice, each holding every n-th of them) of a
        heavier one. False once nothing is pending or running any more."""
        design = self.design
        busy = {k[0] for k, c in self.chains.items() if sum(c.pending) or c.lease_free_at > now}
        if not busy:
            return any(kind != "tick" for _, _, kind, _ in self.events)
        cold = self.environment()
        started = now + (self.platform.cold_start if cold else 0.0)
        looked = started + self.look(busy)
        targets: list[tuple[tuple[int, int], ...]] = []
        for shard in sorted(busy):
            parts = [(shard, part) for part in range(design.slices)]
            due = sum(sum(self.chains[k].pending) for k in parts)
            held = [k for k in parts if sum(self.chains[k].pending) or self.chains[k].lease_free_at > now]
            runs = (
                1 if design.slices == 1 or due <= design.split_at else min(len(held), math.ceil(due / design.split_at))
            )
            targets += [tuple(held[first::runs]) for first in range(runs)]
        for n, chains in enumerate(targets):
            accepted = looked + (n // design.fanout_parallelism + 1) * self.platform.invoke
            self.push(accepted + self.async_start(), "invoke", (chains, minute, accepted, 0))
        ended = looked + math.ceil(len(targets) / design.fanout_parallelism) * self.platform.invoke
        self.coordinators.append((now, ended, cold))
        self.push(ended, "done", None)
        return True

    def look(self, busy: set[int]) -> float:
        """How long the coordinator's look at every shard takes: ``peekers`` shards at a time, each
        a one-item Query per slice; a sliced busy shard's count reads up to ``split_at`` + 1 entries
        (one Query page for them, then a peek at each slice left)."""
        design = self.design
        per_shard = [sum(self.peek() for _ in range(design.slices)) for _ in range(design.shards)]
        if design.slices > 1:
            for shard in busy:
                due = sum(sum(self.chains[(shard, part)].pending) for part in range(design.slices))
                per_shard[shard] += min(due, design.split_at + 1) * self.page_item
        waves = [per_shard[i : i + design.peekers] for i in range(0, design.shards, design.peekers)]
        return sum(max(wave) for wave in waves)

    def invoke(self, now: float, chains: tuple[tuple[int, int], ...], minute: int, accepted: float, tries: int) -> None:
        if self.executing >= self.limit:  # throttled: Lambda keeps the event and tries again later
            self.push(now + min(2.0**tries, ASYNC_RETRY_CAP), "invoke", (chains, minute, accepted, tries + 1))
            return
        cold = self.environment()
        started = now + (self.platform.cold_start if cold else 0.0)
        ended = self.run_once(RunRecord(chains, minute, accepted, now, started, started, started, cold, None))
        self.push(ended, "done", None)

    def run_once(self, run: RunRecord) -> float:
        """The run of one invocation: wait for the leases of its slices, dispatch; when it ends.
        (A run over several slices waits for the last of their leases; what it leaves pending is
        put back in its first slice.)"""
        design, chains = self.design, [self.chains[k] for k in run.chain]
        waited = 0.0
        free_at = max(chain.lease_free_at for chain in chains)
        if free_at > run.started:
            waited = LEASE_POLL * math.ceil((free_at - run.started) / LEASE_POLL)
            if waited > min(design.lease_wait, self.window):  # gives up: the shard waits a minute
                run.ended = run.leased = run.started + min(design.lease_wait, self.window)
                self.runs.append(run)
                return run.ended
        run.leased = run.started + waited
        released = [chain.released_at for chain in chains if chain.released_at is not None]
        consistent = design.consistent_read == "always" or (
            design.consistent_read == "recent" and bool(released) and run.leased - max(released) < design.fresh_release
        )
        skip_after: float | None = round(self.deadline - run.leased, 1)
        if skip_after is not None and skip_after > self.window + 1:
            skip_after = None
        pending = tuple(chain.pending for chain in chains)
        run.key = (pending, consistent, round(self.window - waited, 1), skip_after)
        result = self.results.get(run.key)
        if result is None:
            spec = replace(
                self.template,
                shards=pending,
                window=self.window - waited,
                deadline=design.timeout - waited,
                skip_after=skip_after,
                consistent=consistent,
                seed=zlib.crc32(repr((self.seed, run.key)).encode()),
            )
            result = self.results[run.key] = simulate_run(spec)
        run.ended = run.leased + result.end
        for n, chain in enumerate(chains):
            chain.pending = result.leftover if n == 0 else tuple(0 for _ in result.leftover)
            if result.timed_out:  # Lambda ended it: its lease runs out by itself
                chain.lease_free_at, chain.released_at = run.leased + design.lease_seconds, None
            else:
                chain.lease_free_at = chain.released_at = run.ended
        self.runs.append(run)
        return run.ended


def _share(total: int, parts: int, part: int) -> int:
    """Part ``part`` of ``total`` split as evenly as can be into ``parts``."""
    return total // parts + (1 if part < total % parts else 0)


# -- summing a burst up -------------------------------------------------------------------------


def percentile_of_shifted(series: list[tuple[list[float], float, int]], p: float) -> float:
    """The p-th percentile (nearest rank) of the union of sorted lists, each shifted by an offset
    and counted ``weight`` times, found by bisection on the value."""
    total = sum(len(values) * weight for values, _, weight in series)
    if not total:
        return 0.0
    rank = max(1, math.ceil(p * total / 100))
    low = min(values[0] + shift for values, shift, _ in series if values)
    high = max(values[-1] + shift for values, shift, _ in series if values)
    while high - low > 1e-4:
        middle = (low + high) / 2
        count = sum(bisect_right(values, middle - shift) * weight for values, shift, weight in series)
        if count >= rank:
            high = middle
        else:
            low = middle
    return high


def peak_per_second(demand: dict[int, float]) -> float:
    """The highest count in any one second (BIN-wide slots, summed over a sliding second)."""
    if not demand:
        return 0.0
    width = round(1 / BIN)
    first = min(demand)
    dense = [0.0] * (max(demand) - first + 1)
    for slot, count in demand.items():
        dense[slot - first] += count
    sums = [0.0, *accumulate(dense)]
    return max(sums[min(i + width, len(sums) - 1)] - sums[i] for i in range(len(dense)))


def shifted_sum(parts: Iterable[tuple[dict[int, int], int, int]]) -> dict[int, float]:
    """The sum of histograms, each moved by a number of slots and counted ``weight`` times."""
    total: dict[int, float] = {}
    for histogram, shift, weight in parts:
        for slot, count in histogram.items():
            total[slot + shift] = total.get(slot + shift, 0) + count * weight
    return total


def concurrency_peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at once."""
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best
