"""Nightscout ``find`` regular expressions against a real ``glucoledger serve``: what clients
send still selects what it did; what only a backtracking engine runs is refused (400, saying
what is allowed); what RE2 runs is bounded by the size of its program (interop/nsquery.py
``Regex``; the audit's ReDoS held the GIL 37 s with one request).

The patterns the clients send, from their sources (read, not copied):
- cgm-remote-monitor's reports (``lib/report/reportclient.js``): ``find[eventType]=/<typed>/i``
  and ``find[notes]=/<typed>/i``;
- Scoutnight: ``find[eventType]=/Sensor Start|Sensor Change/``;
- oref0 (``bin/ns-get.sh`` via ``nightscout latest-openaps-treatment``):
  ``find[enteredBy]=/openaps:\\/\\//``, and uploaders that put Python's ``re.escape`` of their
  name between slashes (older Pythons escaped ``:`` and ``/`` too);
- ``/^Temp/i`` (AAPS-era docs of the v1 API), the v3 docs' ``eventType$re=Temp.*``;
- Trio's ``find[$or][i][...]`` and ``find[$and][i][...]`` forms, with a pattern in them.

No timing is asserted: a refusal is asserted, or, for what RE2 accepts, the deterministic bound
(the RE2 program's size, which bounds the steps per byte of text).
"""

from __future__ import annotations

import hashlib
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from glucoledger.errors import MalformedError
from glucoledger.interop.nsquery import (
    MAX_PROGRAM,
    MAX_REGEX_STEPS,
    Found,
    Regex,
    parse_query,
    select,
    v3_params,
)
from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from ..servers import ServeProcess

UP = {"api-secret": hashlib.sha1(DEMO_UPLOADER_SECRET.encode()).hexdigest()}
LIMITED = "regular expressions in find are limited to"
#: The audit's value: one treatment, 256 characters that never end the match.
LONG = "a" * 256


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class Server:
    def __init__(self, folder: Path) -> None:
        self.server = ServeProcess(folder, "--insecure-cookies", ready="/api/v1/status.json",
                                   timeout=180, stop_signal=signal.SIGTERM)
        self.url = self.server.url
        self.session = requests.Session()
        # Twenty days back: before the demo's own 14 days (``seed_demo``), whose treatments
        # fall at fixed times of day, so only these are in the window whenever it runs.
        self.t0 = int(time.time() * 1000) - 20 * 86_400_000
        docs = [{"eventType": "Note", "notes": "exercise (run) 30 min", "enteredBy": "mum"},
                {"eventType": "Sensor Start", "notes": "G6", "enteredBy":
                 "openaps://medtronic/554"},
                {"eventType": "Temp Basal", "rate": 0.7, "absolute": 0.7, "duration": 30,
                 "enteredBy": "loop://iPhone"},
                {"eventType": "Note", "notes": LONG, "enteredBy": "mum"},
                {"eventType": "Site Change", "enteredBy": "xdrip"}]
        for i, d in enumerate(docs):
            d["created_at"] = _iso(self.t0 + 60_000 * (i + 1))
        # Two hours on: 40 notes of 2,000 characters (the longest a note may be).
        self.t2 = self.t0 + 2 * 3_600_000
        docs += [{"eventType": "Note", "notes": "a" * 2000, "enteredBy": "mum",
                  "created_at": _iso(self.t2 + 60_000 * (i + 1))} for i in range(40)]
        r = self.session.post(self.url + "/api/v1/treatments", json=docs, headers=UP, timeout=60)
        assert r.status_code == 200, r.text

    def find(self, *params: tuple[str, str], timeout: float = 60, start: int = 0
             ) -> requests.Response:
        """``treatments.json`` over the hour of treatments posted here from ``start`` (the
        first by default), with ``params`` added."""
        start = start or self.t0
        window = [("find[created_at][$gte]", _iso(start)),
                  ("find[created_at][$lt]", _iso(start + 3_600_000))]
        return self.session.get(self.url + "/api/v1/treatments.json", headers=UP,
                                params=[*window, *params], timeout=timeout)

    def stop(self) -> None:
        self.session.close()
        self.server.stop(wait=20)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("nsregex") / "node")
    yield s
    s.stop()


def _kinds(r: requests.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(f"{d['eventType']}:{d.get('notes', '')[:8]}" for d in r.json())


@pytest.mark.parametrize(("params", "expect"), [
    ([("find[eventType]", "/basal/i")], ["Temp Basal:"]),  # reportclient.js, typed text
    ([("find[notes]", "/exerc/i")], ["Note:exercise"]),
    ([("find[notes]", "/exercise (run)/i")], []),  # typed text is a pattern there too
    ([("find[notes]", "/exercise \\(run\\)/i")], ["Note:exercise"]),
    ([("find[eventType]", "/Sensor Start|Sensor Change/")], ["Sensor Start:G6"]),  # Scoutnight
    ([("find[enteredBy]", "/openaps:\\/\\//"), ("count", "1")], ["Sensor Start:G6"]),  # oref0
    ([("find[enteredBy]", "/" + re.escape("loop://iPhone") + "/")], ["Temp Basal:"]),
    ([("find[enteredBy]", "/loop\\:\\/\\/iPhone/")], ["Temp Basal:"]),  # Python 2 re.escape
    ([("find[eventType]", "/^Temp/i")], ["Temp Basal:"]),
    ([("find[eventType]", "/change$/i")], ["Site Change:"]),
    ([("find[enteredBy][$ne]", "/^(mum|xdrip)$/")], ["Sensor Start:G6", "Temp Basal:"]),
    ([("find[$or][0][eventType][$eq]", "/^site/i"), ("find[$or][1][notes]", "/^G\\d$/")],
     ["Sensor Start:G6", "Site Change:"]),  # Trio's form, a pattern in it
    ([("find[$and][0][enteredBy][$ne]", "/mum/"), ("find[eventType]", "/ /")],
     ["Sensor Start:G6", "Site Change:", "Temp Basal:"]),
])
def test_what_clients_send_selects_what_it_did(srv: Server, params: list[tuple[str, str]],
                                                expect: list[str]) -> None:
    assert _kinds(srv.find(*params)) == expect


def test_v3_re_operator(srv: Server) -> None:
    r = srv.session.get(f"{srv.url}/api/v2/authorization/request/{DEMO_UPLOADER_SECRET}",
                        timeout=60)
    bearer = {"Authorization": f"Bearer {r.json()['token']}"}
    r = srv.session.get(srv.url + "/api/v3/treatments", headers=bearer, timeout=60,
                        params={"eventType$re": "Temp.*", "created_at$gte": _iso(srv.t0),
                                "created_at$lt": _iso(srv.t0 + 3_600_000)})
    assert r.status_code == 200, r.text
    assert [d["eventType"] for d in r.json()["result"]] == ["Temp Basal"]
    r = srv.session.get(srv.url + "/api/v3/treatments", headers=bearer, timeout=60,
                        params={"notes$re": "(a)\\1", "created_at$gte": _iso(srv.t0)})
    assert r.status_code == 400 and LIMITED in r.json()["message"]


def test_v3_re_on_any_field(srv: Server) -> None:
    """API v3's ``field$re`` is MongoDB's ``$regex`` on whatever field it names
    (cgm-remote-monitor ``lib/api3/generic/search/input.js`` parseFilter, operator ``re``;
    ``storage/mongoCollection/utils.js`` parseFilter: ``{$regex: value}``), not only on the
    v1 list (notes, eventType, enteredBy): text values match, numbers never (as MongoDB)."""
    r = srv.session.get(f"{srv.url}/api/v2/authorization/request/{DEMO_UPLOADER_SECRET}",
                        timeout=60)
    bearer = {"Authorization": f"Bearer {r.json()['token']}"}
    window = {"created_at$gte": _iso(srv.t0), "created_at$lt": _iso(srv.t0 + 3_600_000)}
    third = _iso(srv.t0 + 180_000)  # the Temp Basal's created_at, as sent
    for params, expect in (({"created_at$re": "^" + re.escape(third) + "$"}, ["Temp Basal"]),
                           ({"rate$re": "0"}, []),
                           ({"enteredBy$re": "^loop:"}, ["Temp Basal"])):
        r = srv.session.get(srv.url + "/api/v3/treatments", headers=bearer, timeout=60,
                            params={**window, **params})
        assert r.status_code == 200, r.text
        assert [d["eventType"] for d in r.json()["result"]] == expect, params


def test_v3_re_condition_unit() -> None:
    """``v3_params`` + ``parse_query(v3=True)``: a pattern on a field outside the v1 list; the
    same find through v1 stays an equality (Nightscout v1 parses patterns only there)."""
    docs = [Found("entries", str(i), 1000 + i, {"device": d, "sgv": 100 + i})
            for i, d in enumerate(["Dexcom G6", "xDrip-LibreReceiver", "dexcom share"])]
    v1, _ = v3_params([("device$re", "^Dex|share$")])
    got = select(docs, parse_query("entries", v1, v3=True))
    assert sorted(f.doc["device"] for f in got) == ["Dexcom G6", "dexcom share"]
    assert select(docs, parse_query("entries", [("find[device]", "/^Dex/")])) == []
    with pytest.raises(MalformedError, match="operator"):
        parse_query("entries", v1)  # not through v1


#: Needs backtracking, or is too large: refused with what is allowed.
REFUSED = ["/(a)\\1/", "/(a*)\\1*x/", "/(?=a)a/", "/(?!b)a/", "/(?<=a)a/", "/(?<!b)a/",
           "/a\\Z/", "/a/x", "/.{500}/", "/\\pL{100}/", "/(?:.{10}){30}/",
           "/" + "a" * 255 + "/"]


@pytest.mark.parametrize("value", REFUSED)
def test_what_needs_backtracking_or_is_too_large_is_refused(srv: Server, value: str) -> None:
    for params in ([("find[notes]", value)], [("find[$or][0][notes][$eq]", value)],
                   [("find[$and][0][enteredBy][$ne]", value)]):
        r = srv.find(*params)
        assert r.status_code == 400, (params, r.text)
        body = r.json()
        assert body["code"] == "malformed" and LIMITED in body["message"], body


#: The audit's attack patterns that RE2 accepts: run, in a bounded number of steps.
LINEAR = ["/(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*x/", "/" + ".*" * 60 + "x/", "/(a|a)*x/",
          "/(a|aa)*x/", "/(a+)+x/", "/(x+x+)+y/", "/(?:.*.*){50}x/i", "/(a*)*$b/s",
          "/^(a|a?)+x$/m"]


@pytest.mark.parametrize("value", LINEAR)
def test_the_audits_patterns_run_bounded(srv: Server, value: str) -> None:
    # The bound, deterministic: RE2 (never Python's backtracking re) with a program of at
    # most MAX_PROGRAM instructions, so a search is at most a constant times that many
    # steps per byte of the value.
    [cond] = parse_query("treatments", [("find[notes]", value)]).where
    assert isinstance(cond.pattern, Regex) and not isinstance(cond.pattern.compiled, re.Pattern)
    assert 0 < cond.pattern.compiled.programsize <= MAX_PROGRAM
    # Through the server: the 256 a's (the audit's value) are searched and do not match.
    r = srv.find(("find[notes]", value), timeout=120)
    assert r.status_code == 200, r.text
    assert all(d["notes"] != LONG for d in r.json())


def test_and_or_keep_the_value_the_pattern_was_compiled_from(srv: Server) -> None:
    # Over 256 characters: refused, never compiled whole while the value kept is cut.
    long = "/" + "a" * 300 + "/"
    for name in ("find[$or][0][notes]", "find[$and][0][notes][$ne]", "find[notes]"):
        r = srv.find((name, long))
        assert r.status_code == 400, (name, r.text)
    q = parse_query("treatments", [("find[$or][0][notes]", "/ab+c/i"),
                                   ("find[$and][0][enteredBy][$ne]", "/^m/"),
                                   ("find[$or][1][enteredBy]", "x" * 300)])
    for c in (*q.where, *q.either):
        if c.pattern is not None:
            assert c.values[0] == f"/{c.pattern.source}/{c.pattern.flags}"
        else:  # a plain value is still cut, as before
            assert c.values[0] == "x" * 256


def test_a_refusal_changes_nothing(srv: Server) -> None:
    before = srv.session.get(srv.url + "/api/v1/status.json", timeout=60).json()
    count = len(srv.find().json())
    r = srv.find(("find[notes]", "/(a)\\1/"))
    assert r.status_code == 400
    assert "use plain text" in r.json()["message"]
    assert len(srv.find().json()) == count
    assert srv.session.get(srv.url + "/api/v1/status.json", timeout=60).json()[
        "status"] == before["status"] == "ok"


def test_refusals_in_the_parser_name_the_value() -> None:
    with pytest.raises(MalformedError, match=r"find\[notes\] '/\(a\)\\\\1/' is refused"):
        parse_query("treatments", [("find[notes]", "/(a)\\1/")])
    with pytest.raises(MalformedError, match="is not a regular expression: missing \\)"):
        parse_query("treatments", [("find[notes]", "/(unclosed/")])
    with pytest.raises(MalformedError, match="the x flag"):
        parse_query("treatments", [("find[notes]", "/a # b/x")])
    # Only on a treatment's notes, eventType and enteredBy, as Nightscout: elsewhere a value
    # between slashes is text.
    [c] = parse_query("entries", [("find[device]", "/(a)\\1/")]).where
    assert c.pattern is None and c.values == ("/(a)\\1/",)
    flags = {f: parse_query("treatments", [("find[notes]", f"/a/{f}")]).where[0].pattern
             for f in ("i", "m", "s", "ims")}
    assert flags["i"] is not None and flags["i"].search("A")
    assert flags["s"] is not None and flags["s"].search("a\n")
    assert flags["m"] is not None and not flags["m"].search("A")


def test_a_query_searches_at_most_max_regex_steps(srv: Server) -> None:
    # .*a.{110}: one of the largest programs allowed, one that defeats RE2's DFA cache; over
    # 40 notes of 2,000 characters it would pass the bound, so the query is refused.
    [cond] = parse_query("treatments", [("find[notes]", "/.*a.{110}/")]).where
    assert cond.pattern is not None and cond.pattern.size * 2001 * 40 > MAX_REGEX_STEPS
    r = srv.find(("find[notes]", "/.*a.{110}/"), start=srv.t2)
    assert r.status_code == 400, r.text
    assert "narrow the time window" in r.json()["message"]
    # What clients send, over the same notes: well within it.
    assert srv.find(("find[notes]", "/exerc/i"), start=srv.t2).json() == []
    assert len(srv.find(("find[notes]", "/^a+$/"), start=srv.t2).json()) == 40


def test_the_step_bound_is_counted_before_each_search() -> None:
    [cond] = parse_query("treatments", [("find[notes]", "/(a|aa)*x/")]).where
    assert cond.pattern is not None
    per_doc = cond.pattern.size * (2000 + 1)
    fits = MAX_REGEX_STEPS // per_doc
    docs = [Found("treatments", f"Note|{i}", i, {"eventType": "Note", "notes": "a" * 2000})
            for i in range(fits + 1)]
    query = parse_query("treatments", [("find[notes]", "/(a|aa)*x/")])
    assert select(docs[:fits], query) == []
    with pytest.raises(MalformedError, match="would take more than"):
        select(docs, query)
    # Values without the field, or not text, are not searched and cost nothing.
    assert select([Found("treatments", "x", 1, {"eventType": "Note"})] * (fits + 5), query) == []
