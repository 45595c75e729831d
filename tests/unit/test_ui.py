"""The browser step's pure parts: the page's requests read from Chrome's performance log, which of them fail the
check, and the rule for when the step runs. No browser, no engine."""

from __future__ import annotations

import json

import pytest

from mlflowkit import ui, validate
from mlflowkit.errors import KitError

ORIGIN = "http://127.0.0.1:5040"


def entry(method: str, **params) -> dict:
    """One ``driver.get_log("performance")`` entry as chromedriver gives it."""
    return {"level": "INFO", "message": json.dumps({"message": {"method": method, "params": params}})}


def sent(request_id: str, url: str, method: str = "GET", **extra) -> dict:
    return entry("Network.requestWillBeSent", requestId=request_id, request={"url": url, "method": method}, **extra)


def answered(request_id: str, status: int) -> dict:
    return entry("Network.responseReceived", requestId=request_id, response={"status": status})


def test_requests_are_read_from_the_performance_log_with_status_error_and_redirect_hops():
    log = [sent("1", f"{ORIGIN}/"), answered("1", 200),
           sent("2", f"{ORIGIN}/ajax-api/2.0/mlflow/runs/search", "POST"), answered("2", 500),
           sent("3", f"{ORIGIN}/static-files/x.js"),
           entry("Network.loadingFailed", requestId="3", errorText="net::ERR_CONNECTION_RESET"),
           sent("4", f"{ORIGIN}/old"), sent("4", f"{ORIGIN}/new", redirectResponse={"status": 302}),
           answered("4", 200), entry("Page.frameNavigated", frame={})]
    got = [(r.method, r.url.removeprefix(ORIGIN), r.status, r.error) for r in ui.requests_of(log)]
    assert got == [("GET", "/", 200, ""), ("POST", "/ajax-api/2.0/mlflow/runs/search", 500, ""),
                   ("GET", "/static-files/x.js", None, "net::ERR_CONNECTION_RESET"),
                   ("GET", "/old", 302, ""), ("GET", "/new", 200, "")]


def test_a_clean_page_has_no_problem():
    log = [sent("1", f"{ORIGIN}/"), answered("1", 200), sent("2", "data:image/png;base64,AAAA"),
           sent("3", f"{ORIGIN}/ajax-api/2.0/mlflow/users/current"), answered("3", 404),
           sent("4", f"{ORIGIN}/graphql", "POST"),
           entry("Network.loadingFailed", requestId="4", errorText="net::ERR_ABORTED", canceled=True),
           sent("5", f"{ORIGIN}/ajax-api/3.0/mlflow/traces/metrics", "POST"),  # the page is reloaded (wait_for)
           entry("Network.loadingFailed", requestId="5", errorText="net::ERR_NETWORK_CHANGED")]
    assert ui.network_problems(ui.requests_of(log), ORIGIN, auth=False) == []


def test_a_request_chrome_gave_up_on_is_a_problem_unless_it_loads_when_asked_again():
    chunk = f"{ORIGIN}/static-files/static/css/12.chunk.css"
    gave_up = [sent("1", chunk), entry("Network.loadingFailed", requestId="1", errorText=ui.GAVE_UP)]
    assert ui.network_problems(ui.requests_of(gave_up), ORIGIN, auth=False) == [
        "GET /static-files/static/css/12.chunk.css failed: net::ERR_TOO_MANY_RETRIES"]
    still_failing = gave_up + [sent("2", chunk), answered("2", 502)]
    assert ui.network_problems(ui.requests_of(still_failing), ORIGIN, auth=False) == [
        "GET /static-files/static/css/12.chunk.css failed: net::ERR_TOO_MANY_RETRIES",
        "GET /static-files/static/css/12.chunk.css answered 502"]
    loaded = gave_up + [sent("2", chunk), answered("2", 200)]
    assert ui.network_problems(ui.requests_of(loaded), ORIGIN, auth=False) == []


def test_failed_calls_and_other_hosts_are_problems():
    log = [sent("1", f"{ORIGIN}/ajax-api/2.0/mlflow/runs/search", "POST"), answered("1", 403),
           sent("2", "https://telemetry.example.com/v1/events", "POST"), answered("2", 204),
           sent("3", "http://localhost:5040/ajax-api/2.0/mlflow/experiments/search"), answered("3", 200),
           sent("4", f"{ORIGIN}/static-files/static/js/main.js"), answered("4", 404)]
    assert ui.network_problems(ui.requests_of(log), ORIGIN, auth=False) == [
        "POST /ajax-api/2.0/mlflow/runs/search answered 403",
        "request to another host: POST https://telemetry.example.com/v1/events",
        "request to another host: GET http://localhost:5040/ajax-api/2.0/mlflow/experiments/search",
        "GET /static-files/static/js/main.js answered 404"]


def test_who_am_i_may_fail_only_where_there_is_no_auth_app():
    log = [sent("1", f"{ORIGIN}/ajax-api/2.0/mlflow/users/current"), answered("1", 404)]
    assert ui.network_problems(ui.requests_of(log), ORIGIN, auth=False) == []
    assert ui.network_problems(ui.requests_of(log), ORIGIN, auth=True) == [
        "GET /ajax-api/2.0/mlflow/users/current answered 404"]


def test_no_browser_is_one_line_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(ui, "CHROMIUM", ("/nonexistent/chromium",))
    monkeypatch.setattr(ui, "_BROWSER", [])
    assert ui.find_browser() is None and not ui.available()
    assert validate.ui_wanted(None) is False and validate.ui_wanted(True) is True
    with pytest.raises(KitError) as info:
        ui.browser()
    assert "\n" not in str(info.value) and "apt-get install chromium chromium-driver" in (info.value.hint or "")



def test_calls_only_a_sql_store_answers_are_gaps_of_a_file_store_and_failures_elsewhere():
    log = [sent("1", f"{ORIGIN}/ajax-api/3.0/mlflow/datasets/search", "POST"), answered("1", 500),
           sent("2", f"{ORIGIN}/ajax-api/3.0/mlflow/traces/metrics", "POST"), answered("2", 500),
           sent("3", f"{ORIGIN}/ajax-api/3.0/mlflow/traces/metrics", "POST"), answered("3", 500)]
    requests = ui.requests_of(log)
    assert ui.network_problems(requests, ORIGIN, auth=False, file_store=True) == []
    assert ui.file_store_gaps(requests) == ["/ajax-api/3.0/mlflow/datasets/search",
                                            "/ajax-api/3.0/mlflow/traces/metrics"]
    assert len(ui.network_problems(requests, ORIGIN, auth=False, file_store=False)) == 2


def test_without_selenium_there_is_no_browser_check_and_the_hint_says_so(monkeypatch):
    monkeypatch.setattr(ui, "_selenium_missing", lambda: True)
    monkeypatch.setattr(ui, "_BROWSER", [])
    monkeypatch.setattr(ui, "find_browser", lambda: ("/usr/bin/chromium", "/usr/bin/chromedriver"))
    assert not ui.available() and validate.ui_wanted(None) is False
    with pytest.raises(KitError) as info:
        ui.browser()
    assert "Selenium is not installed" in str(info.value) and "pip install selenium" in (info.value.hint or "")


@pytest.fixture
def tls_server(tmp_path):
    """A local https server with a self-signed certificate for 127.0.0.1 (openssl); (url, its certificate)."""
    import http.server
    import ssl
    import subprocess
    import threading

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    server.shutdown()


class FakeDriver:
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict]] = []

    def execute_cdp_cmd(self, command: str, params: dict) -> None:
        self.commands.append((command, params))


def _target(url: str, ca: str | None) -> ui.Target:
    return ui.Target(url, "e", "1", "run", "validation", {}, "m", "1", "champion", "tr-x", (), ca_file=ca)


def test_a_stack_ca_is_checked_here_before_the_browser_accepts_its_certificate(tls_server):
    import certifi

    url, cert = tls_server
    browser = type("B", (), {"driver": FakeDriver()})()
    ui._trust_stack_ca(browser, _target(url, cert))
    assert browser.driver.commands == [("Security.setIgnoreCertificateErrors", {"ignore": True})]
    with pytest.raises(KitError, match="does not present a certificate of"):
        ui._trust_stack_ca(browser, _target(url, certifi.where()))  # public CAs: not this certificate's
    ui._trust_stack_ca(browser, _target("http://127.0.0.1:5040", None))  # plain http: nothing accepted
    assert browser.driver.commands[-1] == ("Security.setIgnoreCertificateErrors", {"ignore": False})


def test_a_page_in_a_workspace_names_it_in_the_hash_routes_query():
    from mlflowkit.ui import in_workspace

    base = "http://127.0.0.1:5010"
    assert in_workspace(f"{base}/#/experiments", None) == f"{base}/#/experiments"
    assert in_workspace(f"{base}/#/experiments", "vision") == f"{base}/#/experiments?workspace=vision"
    assert in_workspace(f"{base}/#/experiments/1/traces?selectedEvaluationId=tr-1", "default") == \
        f"{base}/#/experiments/1/traces?selectedEvaluationId=tr-1&workspace=default"
