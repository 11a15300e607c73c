"""The report in a real headless Chromium (Debian's `chromium`, driven over the DevTools protocol):
a demo-style run (the demo's generated videos and tiny models, two of them broken or missing) and a
two-run comparison with hostile captions load from disk (file://), render their cards, filter, keep
the filter in the URL fragment, show markup in captions as text, and log no console error.
Without chromium the tests are skipped, saying so."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1280,1000",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).is_file() else None)


def why_no_browser() -> str | None:
    """None when the test can run, else the reason to skip it."""
    if chromium_path() is None:
        return "Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return "the websockets package (DevTools protocol client) is not installed"
    return None


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        reply = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": await_promise}
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout)

    def screenshot(self, path: Path, full_height: int | None = None) -> Path:
        if full_height:
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": full_height, "deviceScaleFactor": 1, "mobile": False},
            )
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed resource loads seen so far."""
        self.browser.drain(self.session)
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", "") + " " + params["entry"].get("url", ""))
        return found


class Browser:
    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.ids = itertools.count(1)
        self.profile = Path(tempfile.mkdtemp(prefix="videoqa-chromium-"))
        self.pages: dict[str, Page] = {}

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        self.log = (self.profile / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            [chromium_path() or CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(self.profile / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.connection = ExitStack()
        self.ws = self.connection.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=self.timeout)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.connection.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def dispatch(self, message: dict[str, Any]) -> None:
        page = self.pages.get(message.get("sessionId", ""))
        if page is not None and "method" in message:
            page.events.append(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.dispatch(reply)

    def drain(self, session: str) -> None:
        """Collect the events already sent (a cheap round trip flushes them)."""
        self.send("Runtime.evaluate", {"expression": "0"}, session)

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = self.pages[session] = Page(self, session)
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        page.navigate(url)
        return page


# ---------------------------------------------------------------------------- the tests

pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))

HOSTILE = [
    "<script>window.__pwned = 1</script>the knife on the board",
    "x" * 3000,
    "",
    '<img src=x onerror="window.__pwned = 2"> </script><!-- & \u2028',
]


@pytest.fixture(scope="module")
def reports(dataset, tiny_models, tmp_path_factory) -> dict[str, Any]:
    """Two real runs over the demo-style dataset (3 good videos, 1 broken, 1 missing): the tiny SeR
    captioner, and imported captions full of markup; the LLM is the demo's tiny one (transformers)."""
    from videoqa.config import load_run_config
    from videoqa.report import write_report
    from videoqa.run import VideoQA

    work = tmp_path_factory.mktemp("browser")
    captioner, llm = tiny_models
    common = [
        f"dataset.data_root={dataset}",
        f"output_dir={work / 'outputs'}",
        "llm.backend=transformers",
        "captioner.max_new_tokens=12",
        "run_id=browser",
    ]
    demo = VideoQA(
        load_run_config(
            dataset="egoschema", captioner=str(captioner), llm=str(llm), overrides=[*common, "captioner.name=tiny-ser"]
        ),
        progress=False,
    ).run()
    videos = [json.loads(line)["video_id"] for line in (demo.run_dir / "captions.jsonl").read_text().splitlines()]
    hostile_file = work / "hostile.json"
    hostile_file.write_text(
        json.dumps({v: [{"t": k + 0.5, "caption": c} for k, c in enumerate(HOSTILE)] for v in videos})
    )
    hostile = VideoQA(
        load_run_config(
            dataset="egoschema",
            captioner="lavila",
            llm=str(llm),
            overrides=[*common, f"captioner.model={hostile_file}", "captioner.name=hostile"],
        ),
        progress=False,
    ).run()
    cache = work / "thumbs"
    single = write_report([demo.run_dir], work / "single", cache_dir=cache, progress=False)
    both = write_report([demo.run_dir, hostile.run_dir], work / "both", cache_dir=cache, progress=False)
    predictions = [
        {r["qid"]: r for r in map(json.loads, (d / "predictions.jsonl").read_text().splitlines())}
        for d in (demo.run_dir, hostile.run_dir)
    ]
    return {"single": single, "both": both, "predictions": predictions, "shots": work / "screenshots"}


CARDS = "document.querySelectorAll('article.card').length"
SHOWN = "Number(document.body.dataset.shown)"


def click_outcomes(page: Page, keep: set[str]) -> None:
    """Leave only the `keep` outcome boxes checked, clicking like a reader."""
    page.evaluate(
        "Array.from(document.querySelectorAll('input[name=outcome]')).forEach(b => { "
        f"if (b.checked !== {json.dumps(sorted(keep))}.includes(b.value)) b.click(); }})"
    )


def test_a_run_report_renders_filters_and_keeps_the_filter_in_the_url(reports):
    predictions = reports["predictions"][0]
    failed = sum(r["status"].endswith("failed") for r in predictions.values())
    assert failed == 2  # the broken and the missing video
    with Browser() as browser:
        page = browser.open(reports["single"].as_uri())
        assert page.wait_for(CARDS) == len(predictions) == page.evaluate(SHOWN)
        # thumbnails of the captioned frames load; the failed videos say why, in text
        page.wait_for("Array.from(document.images).some(i => i.complete && i.naturalWidth > 0)")
        text = page.evaluate("document.body.innerText")
        assert "missing" in text and "Transcript:" in text and "answer" in text

        click_outcomes(page, {"failed"})
        assert page.wait_for(f"{SHOWN} === {failed} && {CARDS} === {failed}")
        assert "o=failed" in page.evaluate("location.hash")
        page.screenshot(reports["shots"] / "run-failed.png")

        question = next(iter(predictions.values()))["question"]
        matching = sum(r["question"] == question for r in predictions.values())
        click_outcomes(page, {"correct", "wrong", "invalid", "failed"})
        page.evaluate(
            "(() => { const box = document.getElementById('f-text'); "
            f"box.value = {json.dumps(question.split()[-1])}; box.dispatchEvent(new Event('input')); }})()"
        )
        assert page.wait_for(f"{SHOWN} === {matching} && {CARDS} === {matching}")
        assert page.errors() == []

        # a link keeps the view: the fragment alone restores the filter, or points at one question
        page.navigate(reports["single"].as_uri() + "#o=failed")
        assert page.wait_for(f"{CARDS} === {failed}")
        assert page.evaluate("document.querySelector('input[value=correct]').checked") is False
        qid = next(iter(predictions))
        page.navigate(reports["single"].as_uri() + "#qid=" + qid)
        assert (
            page.wait_for(f"{CARDS} === 1")
            and page.evaluate("document.querySelector('article.card').dataset.qid") == qid
        )
        page.navigate(reports["single"].as_uri())
        page.wait_for(CARDS)
        shot = page.screenshot(reports["shots"] / "run.png", full_height=1600)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert page.errors() == []


def test_a_comparison_report_shows_runs_side_by_side_and_markup_as_text(reports):
    demo, hostile = reports["predictions"]
    common = [q for q in demo if q in hostile]
    right = {q for q in common if demo[q]["correct"] or hostile[q]["correct"]}
    disagree = sum(1 for q in right if not (demo[q]["correct"] and hostile[q]["correct"]))
    with Browser() as browser:
        page = browser.open(reports["both"].as_uri())
        assert page.wait_for(CARDS) == len(common)
        assert page.evaluate("document.querySelectorAll('article.card:first-child .result').length") == 2
        assert page.evaluate("document.querySelectorAll('table.agreement tbody tr').length") == 1
        # each run's caption at the same moment, side by side, with the hostile text shown as text
        heads = page.evaluate(
            "Array.from(document.querySelectorAll('table.captions thead th')).map(h => h.textContent)"
        )
        assert heads[:4] == ["frame", "time", "tiny-ser", "hostile"]
        captions = page.evaluate("Array.from(document.querySelectorAll('td.cap')).map(c => c.textContent)")
        assert HOSTILE[0] in captions and HOSTILE[3] in captions and "(empty caption)" in captions
        assert page.evaluate(
            "window.__pwned === undefined && document.querySelectorAll('td.cap img, td.cap script').length === 0"
        )

        page.evaluate("document.getElementById('f-dis').click()")
        assert page.wait_for(f"{SHOWN} === {disagree} && {CARDS} === {disagree}")
        assert "dis=1" in page.evaluate("location.hash")
        page.evaluate("document.getElementById('f-dis').click()")
        page.wait_for(f"{CARDS} === {len(common)}")
        page.screenshot(reports["shots"] / "comparison.png", full_height=2000)
        assert page.errors() == []

        # the page's policy refuses any script that is not its own
        page.evaluate(
            "(() => { const s = document.createElement('script'); s.textContent = 'window.__probe = 1'; "
            "document.body.appendChild(s); })()"
        )
        assert page.evaluate("window.__probe === undefined")
