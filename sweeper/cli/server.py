"""``sweeper serve``: every study of a store in a browser, from the standard library's
ThreadingHTTPServer. Reports are made on request and kept until the study changes (its trial
counts by state or its last completion); a report of a running study polls for changes and
reloads itself.

Routes: ``/`` studies; ``/study/NAME/`` a study's report (and its figures, ``best/``);
``/api/version/NAME`` the study's current version (JSON).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from sweeper.config.spec import from_stored
from sweeper.errors import SweeperError
from sweeper.report.escape import esc, script_json
from sweeper.store.keys import REVISIONS_ATTR, SPEC_ATTR
from sweeper.store.progress import stored_tally
from sweeper.store.storage import make_storage

SERVED_SUFFIXES = {".html", ".png"}


class NoReport(LookupError):
    """A study there is no report of (not made by sweeper, or its stored definition unreadable)."""


class BadPath(ValueError):
    """A request path no file or study name can have (NUL, control characters, not UTF-8)."""

_LIVE = """<script>
(function () {
  // This study was running when the report was made: reload once it has changed.
  var version = %(version)s, url = %(url)s;
  setInterval(function () {
    fetch(url, {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (d) {
      if (d.version !== version) { location.reload(); }
    }).catch(function () {});
  }, %(ms)d);
})();
</script>"""


@dataclass
class StudyInfo:
    name: str
    version: str
    counts: dict[str, int]
    best: float | None
    last: str | None
    sweeper: bool  # made by sweeper (a sweep definition is stored with it)
    dataset: str = ""
    model: str = ""
    outcomes: str = ""  # store.progress's counts, as show and ls word them

    @property
    def running(self) -> bool:
        return bool(self.counts.get("running") or self.counts.get("waiting"))


class ReportServer:
    """The store, the report folder and the cache of made reports (shared by request threads)."""

    def __init__(self, storage_url: str, out_dir: Path, refresh_s: float = 5.0) -> None:
        self.storage_url = storage_url
        self.storage: BaseStorage = make_storage(storage_url, heartbeat=None, must_exist=True, readonly=True)
        self.out_dir = out_dir
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._study_locks: dict[str, threading.Lock] = {}
        self._made: dict[str, tuple[str, Path]] = {}  # name -> (version, index.html)

    # ------------------------------------------------------------------ store
    def studies(self) -> list[StudyInfo]:
        return [self.info(s.study_name) for s in sorted(self.storage.get_all_studies(), key=lambda s: s.study_name)]

    def info(self, name: str) -> StudyInfo:
        """Counts, best and last update of one study; ``version`` changes whenever a trial
        starts, ends or is queued."""
        sid = self.storage.get_study_id_from_name(name)
        trials = self.storage.get_all_trials(sid, deepcopy=False)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        attrs = self.storage.get_study_user_attrs(sid)
        raw = attrs.get(SPEC_ATTR)
        direction = self.storage.get_study_directions(sid)[0].name.lower()
        prog, _ = stored_tally(trials, raw, name, direction, attrs.get(REVISIONS_ATTR))
        stamps = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_complete or t.datetime_start]
        last = max(stamps).isoformat(sep=" ", timespec="seconds") if stamps else None
        ends = [t.datetime_complete for t in trials if t.datetime_complete]
        version = json.dumps([sorted(counts.items()), max(ends).isoformat() if ends else None])
        data = raw.get("data") if isinstance(raw, dict) else None
        return StudyInfo(
            name, hashlib.sha256(version.encode()).hexdigest()[:16], counts, prog.best, last, raw is not None,
            dataset=str(data.get("dataset", "")) if isinstance(data, dict) else "",
            model=str(raw.get("model", "mlp")) if isinstance(raw, dict) else "",
            outcomes=prog.text() if trials else "",
        )

    # ------------------------------------------------------------------ reports
    def report(self, name: str) -> tuple[Path, StudyInfo]:
        """The study's report index, made again only when the study changed since."""
        with self._lock:
            lock = self._study_locks.setdefault(name, threading.Lock())
        with lock:  # one build per study at a time; others wait for it and reuse it
            info = self.info(name)
            made = self._made.get(name)
            if made and made[0] == info.version and made[1].exists():
                return made[1], info
            from sweeper.report import write_report

            study = optuna.load_study(study_name=name, storage=self.storage)
            if SPEC_ATTR not in study.user_attrs:
                raise NoReport(f"study {name} was not made by sweeper: there is no report of it")
            try:
                spec = from_stored(study.user_attrs[SPEC_ATTR], name)
            except SweeperError as exc:
                raise NoReport(f"no report of study {name}: {exc}") from None
            path = write_report(study, spec, self.out_dir)  # out/NAME/, as `sweeper report` writes
            self._made[name] = (info.version, path)
            return path, info

    def live_script(self, name: str, version: str) -> str:
        url = "/api/version/" + urllib.parse.quote(name, safe="")
        return _LIVE % {"version": script_json(version), "url": script_json(url), "ms": int(self.refresh_s * 1000)}


class Handler(BaseHTTPRequestHandler):
    server_version = "sweeper"
    app: ReportServer  # set on the subclass made by ``make_server``

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: the terminal shows the URL and errors only

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            self._route()
        except BrokenPipeError:
            pass
        except BadPath:
            self._send(HTTPStatus.BAD_REQUEST, "<p>bad request</p>")
        except NoReport as exc:
            self._send(HTTPStatus.NOT_FOUND, f"<p>{esc(exc)}</p>")
        except Exception as exc:  # a broken study must not take the server down
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"<p>error: {esc(type(exc).__name__)}: {esc(exc)}</p>")

    def _route(self) -> None:
        try:
            path = urllib.parse.urlsplit(self.path).path
            decoded = urllib.parse.unquote(path, errors="strict")
        except (ValueError, UnicodeError):  # 'GET http://[x': an invalid URL; '%ff': not UTF-8
            raise BadPath(self.path) from None
        if any(ord(c) < 32 or ord(c) == 127 for c in decoded):  # no file or study name holds NUL, etc.
            raise BadPath(self.path)
        if path in ("/", "/index.html"):
            return self._index()
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if path.startswith("/api/version/"):
            name = urllib.parse.unquote(path[len("/api/version/"):])
            if not self._exists(name):
                return self._send(HTTPStatus.NOT_FOUND, "no such study", "text/plain")
            body = json.dumps({"version": self.app.info(name).version})
            return self._send(HTTPStatus.OK, body, "application/json")
        if path.startswith("/study/"):
            quoted, sep, rest = path[len("/study/"):].partition("/")
            name = urllib.parse.unquote(quoted)
            if not self._exists(name):
                return self._send(HTTPStatus.NOT_FOUND, f"<p>no study named {esc(name)}</p>")
            if not sep:
                return self._redirect(f"/study/{quoted}/")
            return self._study_file(name, urllib.parse.unquote(rest) or "index.html")
        return self._send(HTTPStatus.NOT_FOUND, "<p>not found</p>")

    def _exists(self, name: str) -> bool:
        try:
            self.app.storage.get_study_id_from_name(name)
            return True
        except KeyError:
            return False

    def _index(self) -> None:
        from sweeper.report.pages import studies_page

        rows = []
        for s in self.app.studies():
            rows.append({
                "name": s.name, "outcomes": s.outcomes, "best": s.best, "last": s.last,
                "dataset": s.dataset, "model": s.model if s.sweeper else "(not a sweeper study)",
                "href": "/study/" + urllib.parse.quote(s.name, safe="") + "/",
            })
        self._send(HTTPStatus.OK, studies_page(rows, self.app.storage_url, int(max(1, self.app.refresh_s))))

    def _study_file(self, name: str, rest: str) -> None:
        index, info = self.app.report(name)
        base = index.parent.resolve()
        try:  # (a name too long for the file system raises; that file is not there either)
            target = (base / rest).resolve()
            found = target.is_relative_to(base) and target.suffix in SERVED_SUFFIXES and target.is_file()
        except (OSError, ValueError):
            found = False
        if not found:
            return self._send(HTTPStatus.NOT_FOUND, "<p>not found</p>")
        if target.suffix == ".html":
            page = target.read_text(encoding="utf-8")
            up = "../" * (len(target.relative_to(base).parts) + 1)  # back to the list of studies
            nav = f"<p><a href='{up}'>&larr; all studies</a></p>"
            page = page.replace("<body>", "<body>" + nav, 1)
            if target == index.resolve() and info.running:
                page = page.replace("</body>", self.app.live_script(name, info.version) + "</body>", 1)
            return self._send(HTTPStatus.OK, page)
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, target.read_bytes(), ctype)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: HTTPStatus, body: str | bytes, ctype: str = "text/html; charset=utf-8") -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)


def make_server(app: ReportServer, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    handler = type("SweeperHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
