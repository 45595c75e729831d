"""The MLflow UI checked in a real browser: headless Chromium (the system's, e.g. Debian's ``chromium``) driven by
Selenium through ``chromedriver`` — no browser download.

One browser process per Python process serves every page of every check: created on first use, closed at exit.
The page's network traffic is read from Chrome's performance log (``goog:loggingPrefs``): a failed API call, or
any request to a host other than the stack's own, fails the check, with the browser console's errors beside it.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from mlflowkit.errors import KitError

# Where a browser and its driver are looked for, in order (Debian/Ubuntu names first; PATH lookups after).
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
INSTALL_HINT = ("install Chromium and its driver (Debian/Ubuntu: `apt-get install chromium chromium-driver`); "
                "the kit never downloads a browser.")
_ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1800",
              "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-default-apps")
# Calls the UI makes whose failure is its normal answer, and when: without --auth there is no auth app to say
# who is logged in (the UI then hides user menus).
_EXPECTED_WITHOUT_AUTH = {("/ajax-api/2.0/mlflow/users/current", 404)}
# Calls the UI makes that MLflow answers only from a SQL store: on a file store (deprecated in MLflow 3) the server
# says "<feature> is not supported with FileStore ... requires a SQL-based tracking backend" (HTTP 500). Reported
# in the step's detail, not failed: the topology cannot have them.
FILE_STORE_GAPS = {("/ajax-api/3.0/mlflow/datasets/search", 500), ("/ajax-api/3.0/mlflow/traces/metrics", 500)}
# A call Chrome aborted because the host's network interfaces changed: no answer of the server (see wait_for).
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
# Chrome gave up on a request after its connections kept dropping (seen once on the ha stack: HAProxy logged the
# browser's TLS handshakes failing all at once, as on a host network change). Not a problem if the same URL loads
# when asked again (check() asks once); a problem if it does not.
GAVE_UP = "net::ERR_TOO_MANY_RETRIES"
# Reloads per check after such failures: the kit's own test suite runs two stacks at once, whose containers come
# and go while the other's UI is checked (4 were not enough once, beside the ha fault tests: each page reload
# is bounded by the check's timeout, so this bounds a check at RELOADS + 1 timeouts a page).
RELOADS = 8
# Schemes that never leave the page.
_LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "chrome-error", "devtools")


def _which(candidates: Sequence[str]) -> str | None:
    for candidate in candidates:
        found = candidate if candidate.startswith("/") and Path(candidate).is_file() else shutil.which(candidate)
        if found:
            return found
    return None


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, or None when either is missing."""
    chromium, driver = _which(CHROMIUM), _which(CHROMEDRIVER)
    return (chromium, driver) if chromium and driver else None


def _selenium_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("selenium") is None


SELENIUM_HINT = "install Selenium into the kit's environment (`pip install selenium`; a dev dependency of the kit)."


def available() -> bool:
    """A browser, its driver and Selenium to drive them are all installed."""
    return find_browser() is not None and not _selenium_missing()


# --- what the page did, from Chrome's performance log (pure: unit-tested without a browser) -------------


@dataclass
class Request:
    """One request of the page: its URL, the HTTP status (None: no response) and the network error, if any."""

    url: str
    method: str = "GET"
    status: int | None = None
    error: str = ""
    canceled: bool = False


def requests_of(entries: Sequence[dict[str, Any]]) -> list[Request]:
    """The page's requests, in order, from ``driver.get_log("performance")`` entries (or their messages)."""
    found: list[Request] = []
    latest: dict[str, Request] = {}  # a redirect reuses its request's id: the id names the latest hop
    for entry in entries:
        message = json.loads(entry["message"])["message"] if "message" in entry else entry
        method, params = message.get("method", ""), message.get("params", {})
        request_id = params.get("requestId", "")
        if method == "Network.requestWillBeSent":
            if request_id in latest and "redirectResponse" in params:
                latest[request_id].status = int(params["redirectResponse"]["status"])
            request = Request(params["request"]["url"], params["request"].get("method", "GET"))
            latest[request_id] = request
            found.append(request)
        elif method == "Network.responseReceived" and request_id in latest:
            latest[request_id].status = int(params["response"]["status"])
        elif method == "Network.loadingFailed" and request_id in latest:
            latest[request_id].error = params.get("errorText", "failed")
            latest[request_id].canceled = bool(params.get("canceled"))
    return found


def file_store_gaps(requests: Sequence[Request]) -> list[str]:
    """The calls of :data:`FILE_STORE_GAPS` the page made (their paths, once each)."""
    return list(dict.fromkeys(urlsplit(r.url).path for r in requests
                              if (urlsplit(r.url).path, r.status) in FILE_STORE_GAPS))


def network_problems(requests: Sequence[Request], origin: str, *, auth: bool, file_store: bool = False) -> list[str]:
    """Requests to another host than ``origin`` (``http://127.0.0.1:5000``), and failed calls (HTTP status >= 400
    or a network error; a request canceled by the page itself is not a failure)."""
    own = urlsplit(origin).netloc
    expected = (set() if auth else _EXPECTED_WITHOUT_AUTH) | (FILE_STORE_GAPS if file_store else set())
    problems = []
    for index, request in enumerate(requests):
        parts = urlsplit(request.url)
        if parts.scheme in _LOCAL_SCHEMES:
            continue
        if parts.netloc != own:
            problems.append(f"request to another host: {request.method} {request.url[:200]}")
            continue
        if (parts.path, request.status) in expected:
            continue
        if request.status is not None and request.status >= 400:
            problems.append(f"{request.method} {parts.path}{'?' + parts.query if parts.query else ''} answered "
                            f"{request.status}"[:240])
        elif request.error and not request.canceled and request.error not in ("net::ERR_ABORTED", NETWORK_CHANGED):
            if request.error == GAVE_UP and any(later.url == request.url and later.status is not None
                                                and later.status < 400 for later in requests[index + 1:]):
                continue
            problems.append(f"{request.method} {parts.path} failed: {request.error}")
    return list(dict.fromkeys(problems))


# --- the browser ---------------------------------------------------------------------------------------


class Browser:
    """A headless Chromium session with its network and console logs."""

    def __init__(self, chromium: str, chromedriver: str, timeout: float = 60) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in _ARGUMENTS:
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(options=options, service=Service(chromedriver))
        except Exception as exc:  # noqa: BLE001 - any start failure is the same one line
            raise KitError(f"headless Chromium ({chromium}) did not start: {' '.join(str(exc).split())[:300]}",
                           hint="`chromium --headless=new --no-sandbox --dump-dom about:blank` shows why; "
                                + INSTALL_HINT) from None
        self.driver.set_page_load_timeout(timeout)
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.requests: list[Request] = []
        self.console: list[str] = []
        self.reloads = 0

    def authenticate(self, username: str | None, password: str | None) -> None:
        """Every later request carries these basic-auth credentials (None: none)."""
        headers = {}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})

    def drain(self) -> None:
        """Move what the browser logged since the last call into :attr:`requests` and :attr:`console`."""
        self.requests += requests_of(self.driver.get_log("performance"))
        self.console += [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def ask_again(self, error: str) -> None:
        """Fetch once more, from the page, every URL whose request failed with ``error``; what it answers is
        logged like any request (see :func:`network_problems`)."""
        urls = list(dict.fromkeys(r.url for r in self.requests if r.error == error))
        for url in urls:
            self.driver.execute_script("fetch(arguments[0]).catch(() => {})", url)
        if urls:
            time.sleep(1)
            self.drain()

    def reset(self) -> None:
        self.drain()
        self.requests, self.console, self.reloads = [], [], 0

    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        from selenium.common.exceptions import WebDriverException

        try:
            return str(self.driver.execute_script("return document.body ? document.body.innerText : ''"))
        except WebDriverException:
            return ""

    def wait_for(self, texts: Sequence[str], what: str, timeout: float) -> None:
        """Until every one of ``texts`` is on the page; else a KitError naming what is missing.

        Chrome aborts a page's calls with ERR_NETWORK_CHANGED when any interface of the host comes or goes (a
        container or network starting or going on the engine: benchmarks/probes/chromium_network_change.py made
        253 of 310 requests to 127.0.0.1 fail so), or gives up with ERR_TOO_MANY_RETRIES when its reused
        connections keep dropping: such a page is reloaded, at most RELOADS times per check, and given its whole
        ``timeout`` again (a page reloaded late in its time failed CI once while the other worker's fault tests
        made and removed containers throughout).
        """
        deadline = time.monotonic() + timeout
        next_look = time.monotonic() + 1
        while True:
            shown = self.text()
            missing = [text for text in texts if text not in shown]
            if not missing:
                return
            if time.monotonic() > deadline:
                reloaded = f", {self.reloads} reload(s) after host network changes" if self.reloads else ""
                raise KitError(f"the UI's {what} did not show {', '.join(map(repr, missing))} within {timeout:.0f} s "
                               f"({self.driver.current_url}{reloaded})", details=f"page text:\n{shown[-1500:]}")
            if time.monotonic() > next_look:
                next_look = time.monotonic() + 1
                seen = len(self.requests)
                self.drain()
                if self.reloads < RELOADS and any(r.error in (NETWORK_CHANGED, GAVE_UP) for r in self.requests[seen:]):
                    self.reloads += 1
                    self.driver.refresh()
                    deadline = time.monotonic() + timeout  # the reloaded page gets its whole time again
            time.sleep(0.2)

    def wait_for_url(self, fragment: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.driver.current_url:
            if time.monotonic() > deadline:
                raise KitError(f"{what} led to {self.driver.current_url}, not …{fragment}")
            time.sleep(0.2)

    def click_link(self, text: str, timeout: float) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        xpath = f"//a[normalize-space()={json.dumps(text)}]"
        try:
            WebDriverWait(self.driver, timeout).until(expected_conditions.element_to_be_clickable((By.XPATH, xpath)))
        except Exception:  # noqa: BLE001 - a timeout or a stale page: the same finding
            raise KitError(f"the UI shows no link {text!r} ({self.driver.current_url})",
                           details=f"page text:\n{self.text()[-1500:]}") from None
        self.driver.find_element(By.XPATH, xpath).click()

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise KitError(f"the browser could not save a screenshot to {path}")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # at exit: the browser may already be gone
            self.driver.quit()


_BROWSER: list[Browser] = []


def browser() -> Browser:
    """This process's browser, started on first use (a KitError with the install hint when there is none)."""
    if not _BROWSER:
        found = find_browser()
        if found is None:
            raise KitError("no browser for the UI check: Chromium or chromedriver is not installed.", hint=INSTALL_HINT)
        if _selenium_missing():
            raise KitError("no browser for the UI check: Selenium is not installed.", hint=SELENIUM_HINT)
        _BROWSER.append(Browser(*found))
        atexit.register(close)
    return _BROWSER[0]


def close() -> None:
    """Quit this process's browser (also done at exit)."""
    while _BROWSER:
        _BROWSER.pop().close()


# --- the check -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the validation wrote, which the UI must show."""

    base_url: str  # the published UI address, e.g. http://127.0.0.1:5040
    experiment: str
    experiment_id: str
    run_id: str
    run_name: str
    metrics: dict[str, float]  # latest values, as the run page lists them
    model: str
    version: str
    alias: str
    trace_id: str
    spans: tuple[str, ...]
    file_store: bool = False  # the server reads a file store (see FILE_STORE_GAPS)
    ca_file: str | None = None  # https with the stack's own CA (a browser does not know it; see _trust_stack_ca)
    # A server with workspaces (`up --workspaces`): the one the data is in. MLflow's UI then shows a workspace
    # picker at every page that does not name one (`?workspace=` of its hash routes).
    workspace: str | None = None
    username: str | None = None  # basic auth (`mlflowkit up --auth`)
    password: str | None = field(default=None, repr=False)


def in_workspace(url: str, workspace: str | None) -> str:
    """``url`` (a UI hash route) in ``workspace``: MLflow's UI reads it from the route's query."""
    if workspace is None:
        return url
    return f"{url}{'&' if '?' in url.split('#', 1)[-1] else '?'}workspace={quote(workspace)}"


def check(target: Target, screenshot: Path, timeout: float = 30) -> str:
    """Open the UI as a person would, on every page the validation's data appears on; the detail line.

    Pages: the experiment list (then a click on the validation experiment), the run (its metrics; screenshot),
    the registered model (its version and alias), the experiment's traces view with the trace open.
    """
    started = time.monotonic()
    b = browser()
    _trust_stack_ca(b, target)
    b.open("about:blank")  # every check loads the UI afresh: all of its calls are seen, none left from before
    b.reset()
    base = target.base_url.rstrip("/")
    auth = target.username is not None
    try:
        if auth:
            b.authenticate(None, None)
            b.open(base + "/")
            b.drain()
            document = next((r for r in b.requests if r.url.rstrip("/") == base), None)
            status = document.status if document else None
            if status != 401:
                raise KitError(f"the UI answered {status} to a browser without credentials, not 401 (login)")
            b.reset()
        b.authenticate(target.username, target.password)
        b.open(in_workspace(base + "/#/experiments", target.workspace))
        b.wait_for([target.experiment], "experiment list", timeout)
        b.click_link(target.experiment, timeout)
        b.wait_for_url(f"/experiments/{target.experiment_id}", f"the link {target.experiment!r}", timeout)
        b.wait_for([target.run_name], f"experiment {target.experiment!r}", timeout)
        b.open(in_workspace(f"{base}/#/experiments/{target.experiment_id}/runs/{target.run_id}", target.workspace))
        b.wait_for([target.run_name, *target.metrics, *map(repr, target.metrics.values())], "run page", timeout)
        b.screenshot(screenshot)
        b.open(in_workspace(f"{base}/#/models/{target.model}", target.workspace))
        b.wait_for([f"Version {target.version}", target.alias], f"registered model {target.model!r}", timeout)
        b.open(in_workspace(f"{base}/#/experiments/{target.experiment_id}/traces?selectedEvaluationId={target.trace_id}",
                            target.workspace))
        b.wait_for(list(target.spans), "traces view", timeout)
        time.sleep(0.5)  # calls started by the last page finish (their failures count too)
    except KitError as exc:
        b.drain()
        problems = network_problems(b.requests, base, auth=auth, file_store=target.file_store)
        cause = f"; first failing request: {problems[0]}" if problems else ""
        raise KitError(exc.message + cause, hint=exc.hint, details=_details(b, target, exc.details)) from None
    b.drain()
    b.ask_again(GAVE_UP)
    problems = network_problems(b.requests, base, auth=auth, file_store=target.file_store)
    if problems:
        raise KitError(f"the UI page made {len(problems)} failing or foreign request(s): {problems[0]}",
                       details=_details(b, target, ""))
    pages = "experiments, experiment, run, model, traces"
    gaps = file_store_gaps(b.requests) if target.file_store else []
    known = f" but {len(gaps)} MLflow answers only from a SQL store ({', '.join(gaps)})" if gaps else ""
    reloaded = f" ({b.reloads} page(s) reloaded after a host network change)" if b.reloads else ""
    return (f"{pages} pages in {time.monotonic() - started:.1f} s{' after the login' if auth else ''}; "
            f"{len(b.requests)} requests, all to {urlsplit(base).netloc}, none failed{known}{reloaded}; "
            f"screenshot {screenshot}")


def _trust_stack_ca(b: Browser, target: Target) -> None:
    """A stack with its own CA: its certificate is verified here against that CA (Python's ssl), then the
    browser, which cannot be handed a CA at run time, is told to accept it — for this check only."""
    import socket
    import ssl

    parts = urlsplit(target.base_url)
    if parts.scheme == "https" and target.ca_file:
        context = ssl.create_default_context(cafile=target.ca_file)
        try:
            with socket.create_connection((parts.hostname, parts.port or 443), timeout=10) as sock, \
                    context.wrap_socket(sock, server_hostname=parts.hostname):
                pass
        except (OSError, ssl.SSLError) as exc:
            raise KitError(f"the UI at {target.base_url} does not present a certificate of {target.ca_file}: {exc}",
                           ) from None
    b.driver.execute_cdp_cmd("Security.setIgnoreCertificateErrors",
                             {"ignore": bool(parts.scheme == "https" and target.ca_file)})


def _details(b: Browser, target: Target, page: str | None) -> str:
    problems = network_problems(b.requests, target.base_url.rstrip("/"), auth=target.username is not None,
                                file_store=target.file_store)
    lines = ["failing or foreign requests:", *problems] if problems else []
    lines += ["browser console errors:", *b.console[-20:]] if b.console else []
    return "\n".join([*lines, page or ""]).strip()

