"""Every batching knob of the storage layer, in one place (docs/performance.md, "Batching policy").

Two layers group work into commits, each driven by a :class:`BatchPolicy`:

* a :class:`~supervit.storage.DurableLog` groups *items* (nonces, reports) into one appended row
  per operation: :data:`NODE_NONCE_BATCHING`, :data:`REPORT_LOG_BATCHING`;
* a :class:`~supervit.storage.Database` groups *operations* into one transaction and fsync:
  :data:`GROUP_COMMIT_BATCHING`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROUP_COMMIT_BATCHING", "NODE_NONCE_BATCHING", "REPORT_LOG_BATCHING", "BatchPolicy"]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How work is grouped into commits.

    ``max_delay_secs``: under load, the next group starts at most this long after the previous
    one started (a :class:`~supervit.storage.DurableLog`) or finished (a
    :class:`~supervit.storage.Database`): the longest anything waits for company, on top of the
    commit itself. Never applied when there is no load, so a lone caller is never held back.
    ``max_items``: a group never waits once this many are waiting (a database group carries at
    most this many operations). This is what keeps a closed loop of callers (each waits for its
    answer before sending again) flowing: with a delay alone, nearly all of them pile into one
    group, then wait together for its commit while the next group has nobody to take; a group
    that starts once ``max_items`` wait commits while the rest are still being served, so the
    disk, the server and its callers work at the same time (docs/performance.md, step 12).
    ``under_load``: a log is under load while the moving average of items already unsettled
    (waiting or on disk) when one is appended is at least this (a database: while its previous
    group had company).
    """

    max_delay_secs: float = 0.005
    max_items: int = 4096
    under_load: float = 0.5

    def __post_init__(self) -> None:
        if self.max_delay_secs < 0 or self.max_items < 1 or self.under_load < 0:
            raise ValueError(f"invalid batch policy {self!r}")


GROUP_COMMIT_BATCHING = BatchPolicy(max_delay_secs=0.005, max_items=24)
"""Every :class:`~supervit.storage.Database`: after a group that had company, the next waits
up to 5 ms for more (docs/performance.md step 3), or starts at once when 24 operations wait: a
commit costs about as much CPU as half a request (~125 µs, most of it the fsync's system time).
24 rather than 16 (step 15): with 32 CreateRealm callers in flight the groups grew from 14.9 to
18.8 operations on average, and four side-by-side runs measured 0.85-0.95x the CPU per call
(1.00-1.17x the throughput); below 16 callers in flight nothing changes."""

NODE_NONCE_BATCHING = BatchPolicy(max_delay_secs=0.005, max_items=16)
"""The node's nonce log (``SqliteNonceStorage``): a group every 5 ms under load, or at once when
16 nonces wait (bench/bench_node_rpc.py, docs/performance.md steps 8 and 12)."""

REPORT_LOG_BATCHING = BatchPolicy(max_delay_secs=0.02, max_items=16)
"""The supervisor's report log: a fleet reports on its own schedule, so waiting longer for
company costs latency (about 10 ms on average) but no throughput, while one commit per 20 ms
instead of about one per report cuts the supervisor's CPU per report by about a fifth at 300
reports/s (bench/bench_fleet.py, docs/performance.md). 16 waiting reports start the group at
once: without that, clients that wait for their answer before reporting again were held to
one group of them per 20 ms (1,500 reports/s for 32 such clients, step 12)."""
