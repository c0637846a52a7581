"""Follow a range of etcd keys by one long-lived watch, not by polling.

A consortium node's loop has work only when something under its chain changed: the log
``head/`` (new entries), another member's note (``sig/``), a ``stored/`` or ``health/``
report, a ``ctl/`` URL. ``KeyWatch`` holds one watch stream (etcd v3 JSON gateway,
``POST /v3/watch``, a streaming response of JSON objects; etcd API reference, "Watch API")
over that range in a background thread and counts the changes it sees in ``generation``.
The loop notes the generation *before* it reads etcd and later waits until it moves on:
a change made after those reads is delivered after them, so it always moves the
generation the loop waits on (a change delivered late only costs one spare round).

The range watched for a chain is ``<prefix>c`` .. ``<prefix>t``: every side key and the
heads (``first/``, ``head/``), but not ``batch/`` (``b``), so entries' bytes do not travel
twice; a writer's head moves in the same etcd transaction as each of its batches.

Continuity: each stream starts at the revision after the last event seen (the first at the
revision after a read of the range), so restarts (the stream's deadline, a member going
away) miss nothing. When etcd cannot resume (history compacted past that revision) or no
member holds the watch, the generation moves on anyway, ``healthy`` turns False while it
is down, and the loop falls back to its bounded wait: it never sleeps through a change.

What changed is counted apart as well: ``log_generation`` moves on a change to a key under
the ``log`` prefixes the watch was given (a chain's ``head/`` and ``first/``: the log grew
or was compacted), ``side_generation`` on any other change (notes, reports, URLs). Every gap
moves all three. A follower reads the log only after a log change and the notes only after
a side change: under load each block wakes every node about four times (one append, three
members' notes), and before, each wake read both.

The watch also tells the node's own orderer when the log's heads moved (``on_log``, the
revision of the change): its group-commit writer then reads the heads before its next
append instead of appending at a size it knows is stale (``EtcdOrderer.head_moved``).

Idle cost: one blocked thread and one stream renewal per ``renew`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ._gateway import JSON, Gateway, GatewayError, b64, parse_etcd_url, unb64

__all__ = ["KeyWatch", "side_keys_range"]

log = logging.getLogger(__name__)


def side_keys_range(prefix: str) -> tuple[str, str]:
    """The range of a chain's keys a follower watches: ``ctl/`` .. ``stored/`` and ``head/``,
    not ``batch/`` (see the module doc); ``prefix`` ends with ``/``."""
    if not prefix.endswith("/"):
        raise ValueError("the prefix must end with '/'")
    return prefix + "c", prefix + "t"


class KeyWatch:
    """Watch keys ``start`` <= key < ``end`` of an etcd cluster from a daemon thread.

    ``generation`` grows on every change (and on every gap the watch could not cover);
    ``wait_change(seen, timeout)`` blocks until it differs from ``seen``.
    """

    def __init__(self, gateway: Gateway, start: str, end: str, *, renew: float = 10.0,
                 retry: float = 0.2, log: tuple[str, ...] = (),
                 on_log: Callable[[int], None] | None = None) -> None:
        self._gw = gateway
        self._on_log = on_log
        self._start, self._end = b64(start), b64(end)
        self._log = tuple(p.encode() for p in log)
        self._log_generation = 0
        self._side_generation = 0
        self._renew, self._retry = renew, retry
        self._cond = threading.Condition()
        self._generation = 0
        self._healthy = False
        self._stopped = False
        self._next_rev = 0
        self.events = 0  # changes seen (for tests and the benchmark)
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)

    @classmethod
    def for_chain(cls, url: str, prefix: str, *, timeout: float = 5.0,
                  on_log: Callable[[int], None] | None = None) -> KeyWatch:
        """The follower's watch of one chain (``side_keys_range``) on the cluster at ``url``
        (``etcd://host:port,...[?tls=DIR]``, as ``EtcdOrderer.from_url`` takes).
        ``on_log(revision)`` is called from the watch's thread after each change to the
        log's keys it sees (``EtcdOrderer.head_moved``)."""
        endpoints, tls = parse_etcd_url(url)
        start, end = side_keys_range(prefix)
        return cls(Gateway(endpoints, timeout, tls), start, end,
                   log=(prefix + "head/", prefix + "first/"), on_log=on_log)

    def start(self) -> KeyWatch:
        self._thread.start()
        return self

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    @property
    def log_generation(self) -> int:
        """Grows on every change to a key under the ``log`` prefixes, and on every gap."""
        with self._cond:
            return self._log_generation

    @property
    def side_generation(self) -> int:
        """Grows on every change to any other key, and on every gap."""
        with self._cond:
            return self._side_generation

    @property
    def healthy(self) -> bool:
        """Whether a stream is established now (False: the caller should poll)."""
        with self._cond:
            return self._healthy and not self._stopped

    def wait_change(self, seen: int, timeout: float) -> int:
        """The generation once it differs from ``seen``, or when ``timeout`` passed."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._generation == seen and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._generation

    def wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._healthy and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._healthy

    def close(self) -> None:
        """Stop; the thread ends when its stream next returns (at most ``renew`` s)."""
        with self._cond:
            self._stopped = True
            self._healthy = False
            self._cond.notify_all()
        self._gw.close()

    # -- the thread ------------------------------------------------------------------------

    def _bump(self, healthy: bool | None = None, *, log: bool = True,
              side: bool = True) -> None:
        """A change (or a gap: both kinds, since anything may have changed in it)."""
        with self._cond:
            self._generation += 1
            self._log_generation += log
            self._side_generation += side
            if healthy is not None:
                self._healthy = healthy
            self._cond.notify_all()

    def _set_healthy(self, healthy: bool) -> None:
        with self._cond:
            if self._healthy != healthy:
                self._healthy = healthy
                self._cond.notify_all()

    def _current_revision(self) -> int:
        reply = self._gw.call("/v3/kv/range", {"key": self._start, "range_end": self._end,
                                               "count_only": True})
        return int(reply.body.get("header", {}).get("revision", 0))

    def _run(self) -> None:
        endpoint = self._gw.preferred
        while not self._stopped:
            try:
                if self._next_rev == 0:
                    self._next_rev = self._current_revision() + 1
                    self._bump()  # anything before this revision: the caller's round reads it
                ok = self._stream(endpoint)
            except (GatewayError, OSError, ValueError) as exc:
                log.debug("etcd watch: %s", exc)
                ok = False
            if self._stopped:
                break
            if not ok:
                # Down or unable to resume: wake the caller (it reads etcd itself and falls
                # back to polling while unhealthy), try the next member after a pause.
                self._bump(healthy=False)
                endpoint = (endpoint + 1) % len(self._gw.endpoints)
                time.sleep(self._retry)

    def _kinds(self, events: list[JSON]) -> tuple[bool, bool]:
        """Whether ``events`` changed a key under the ``log`` prefixes, and any other key.
        Without prefixes, or with a key that does not parse, both: a spare read, never a
        missed one."""
        if not self._log:
            return True, True
        log = side = False
        for event in events:
            try:
                key = unb64(event["kv"]["key"])
            except (KeyError, TypeError, ValueError):
                return True, True
            if key.startswith(self._log):
                log = True
            else:
                side = True
        return log, side

    def _stream(self, i: int) -> bool:
        """One stream until its deadline (True) or a failure (False)."""
        request: JSON = {"create_request": {"key": self._start, "range_end": self._end,
                                            "start_revision": str(self._next_rev)}}
        stream = self._gw.stream(i, "/v3/watch", request, time.monotonic() + self._renew)
        try:
            for message in stream:
                if self._stopped:
                    return True
                result = message.get("result")
                if not isinstance(result, dict):
                    return False  # an error object: etcd refused the watch
                if result.get("canceled"):
                    # Compacted past our revision (or refused): resume from now; the caller's
                    # next round reads everything anyway.
                    self._next_rev = 0
                    return False
                if result.get("created"):
                    self._set_healthy(True)
                events = result.get("events") or []
                if events:
                    top = max(int(e.get("kv", {}).get("mod_revision", 0)) for e in events)
                    self._next_rev = max(self._next_rev, top + 1)
                    self.events += len(events)
                    log, side = self._kinds(events)
                    if log and self._on_log is not None:
                        self._on_log(top)
                    self._bump(log=log, side=side)
            return False  # the member closed the stream
        except TimeoutError:
            return True  # the renewal deadline: start the next stream where this one ended
        finally:
            stream.close()
