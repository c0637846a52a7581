"""tconnectsync (Tandem t:slim X2 / Mobi to Nightscout), its request sequence replayed
against a real ``glucoledger serve --demo`` process.

Rebuilt from tconnectsync 3.0.3's ``tconnectsync/nightscout.py`` (``NightscoutApi``) and
``tconnectsync/parser/nightscout.py`` (``NightscoutEntry``): the documents it makes, its
"already uploaded?" checks before and after uploading, a re-run, a PUT and a DELETE. The
package itself is on PyPI but does not install beside this project: through requests-oidc
it pins typer<0.10, below the >=0.12 this project's CLI needs; so its requests are rebuilt
here, byte for byte where it matters (URLs, query strings, headers).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from glucoledger.node.demo_site import DEMO_UPLOADER_SECRET

from .payloads import iso
from .test_ns_replays import UP, Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("tconnectsync") / "node")
    yield s
    s.stop()


def _now() -> int:
    return int(time.time() * 1000)


class _Tconnectsync:
    """tconnectsync 3.0.3's ``NightscoutApi`` (tconnectsync/nightscout.py), its requests as
    it builds them: ``urljoin``, the plain secret as ``?api_secret=`` beside the hashed
    ``api-secret`` header, arrow ISO times with ``+00:00`` put into the URL unescaped (so
    the ``+`` arrives as a space; its second try sends ``T`` as a space too) and ``&ts=``.
    """

    ENTERED_BY = "Pump (tconnectsync)"

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url + "/", secret
        self.hdr = {"api-secret": hashlib.sha1(secret.encode()).hexdigest()}

    def _send(self, method: str, entity: str, body: Any) -> None:
        from urllib.parse import urljoin
        r = requests.request(method, urljoin(self.url, f"api/v1/{entity}?api_secret="
                                             f"{self.secret}"), json=body, timeout=60,
                             headers={**self.hdr, "Accept": "application/json"})
        assert r.status_code == 200, r.text  # ApiException otherwise

    def upload_entry(self, ns_format: Any, entity: str = "treatments") -> None:
        self._send("POST", entity, ns_format)

    def put_entry(self, ns_format: Any, entity: str) -> None:
        self._send("PUT", entity, ns_format)

    def delete_entry(self, entity: str) -> None:
        self._send("DELETE", entity, {})

    @staticmethod
    def _range(field: str, start: str, end: str, t_to_space: bool) -> str:
        fmt = (lambda d: d.replace("T", " ")) if t_to_space else (lambda d: d)
        return f"&find[{field}][$gte]={fmt(start)}&find[{field}][$lte]={fmt(end)}"

    def _latest(self, path: str, date_filter: str) -> Any:
        from urllib.parse import urljoin
        r = requests.get(urljoin(self.url, path + date_filter + f"&ts={time.time()}"),
                         headers=self.hdr, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()[0] if r.json() else None

    def last_uploaded_entry(self, event_type: str, start: str, end: str) -> Any:
        from urllib.parse import quote
        path = (f"api/v1/treatments?count=1&find[enteredBy]={quote(self.ENTERED_BY)}"
                f"&find[eventType]={quote(event_type)}")
        return self._latest(path, self._range("created_at", start, end, False)) \
            or self._latest(path, self._range("created_at", start, end, True))

    def last_uploaded_bg_entry(self, start: str, end: str) -> Any:
        from urllib.parse import quote
        path = f"api/v1/entries.json?count=1&find[device]={quote(self.ENTERED_BY)}"
        return self._latest(path, self._range("dateString", start, end, False))


def _arrow_iso(ms: int) -> str:
    """arrow.get(...).isoformat() of a UTC time: microseconds and ``+00:00``."""
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_tconnectsync(srv: Server) -> None:
    api = _Tconnectsync(srv.url, DEMO_UPLOADER_SECRET)
    n = _now() - 700_000
    n -= n % 1000
    start, end = _arrow_iso(n - 3_600_000), _arrow_iso(n + 60_000)
    # NightscoutEntry.bolus / .basal / .entry (tconnectsync/parser/nightscout.py)
    bolus = {"eventType": "Combo Bolus", "created_at": _arrow_iso(n), "carbs": 20,
             "insulin": 2.5, "notes": "Standard", "enteredBy": api.ENTERED_BY,
             "pump_event_id": "1234", "glucose": "143", "glucoseType": "Sensor"}
    basal = {"eventType": "Temp Basal", "reason": "Control-IQ", "duration": 30.0,
             "absolute": 0.8, "rate": 0.8, "created_at": _arrow_iso(n - 600_000),
             "carbs": None, "insulin": None, "enteredBy": api.ENTERED_BY,
             "pump_event_id": "1235"}
    entry = {"type": "sgv", "sgv": 143, "date": n, "device": api.ENTERED_BY,
             "dateString": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(n / 1000)),
             "pump_event_id": "1236"}
    # its "already uploaded?" checks before it uploads: nothing yet
    assert api.last_uploaded_entry("Combo Bolus", start, end) is None
    assert api.last_uploaded_bg_entry(start, end) is None
    api.upload_entry(bolus)
    api.upload_entry(basal)
    api.upload_entry(entry, entity="entries")
    # ... and after: the newest of each, as it compares them (created_at, pump_event_id)
    last = api.last_uploaded_entry("Combo Bolus", start, end)
    assert last is not None and (last["pump_event_id"], last["insulin"]) == ("1234", 2.5)
    assert last["glucose"] == "143" and last["glucoseType"] == "Sensor"
    last = api.last_uploaded_entry("Temp Basal", start, end)
    assert last is not None and (last["pump_event_id"], last["duration"]) == ("1235", 30.0)
    last = api.last_uploaded_bg_entry(start, end)
    assert last is not None and (last["sgv"], last["pump_event_id"]) == (143, "1236")
    # a re-run uploads the same documents again: nothing new (one Combo Bolus there)
    api.upload_entry(bolus)
    r = srv.get("/api/v1/treatments", headers=UP, params={
        "find[pump_event_id]": "1234", "find[created_at][$gte]": iso(n - 60_000)})
    assert r.status_code == 200 and len(r.json()) == 1
    # its delete (tconnectsync's --delete: treatments/<_id>) and put of a changed basal
    api.put_entry(dict(basal, duration=20.0), "treatments")
    last = api.last_uploaded_entry("Temp Basal", start, end)
    assert last["duration"] == 20.0
    api.delete_entry(f"treatments/{last['_id']}")
    assert api.last_uploaded_entry("Temp Basal", start, end) is None
