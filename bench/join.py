"""Join-to-pass latency: a phone submits the join form and gets its card, through the real
``stempel-hub serve`` (gunicorn, 2 workers) on SQLite and on PostgreSQL.

One sample is what a customer waits for after tapping "Get my card": the POST (CSRF check,
rate limits, the member and pass rows, the Ed25519 signature), the 303, and the card page
(pass verified, balance folded by the engine, the QR drawn as SVG). Each sample is a fresh
customer with their own session (a GET of the form first, not timed). Baseline in the same
run: a GET of the static health page, what the server costs with no work at all.

    .venv/bin/python bench/join.py [--joins 300] [--backends sqlite,postgresql] [--json]
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.eventload import hub_database  # noqa: E402
from cloud.app import create_hub  # noqa: E402
from cloud.config import load_hub_config  # noqa: E402
from cloud.devbroker import free_port  # noqa: E402
from cloud.passes import init_merchant  # noqa: E402

HUB = str(Path(sys.executable).parent / "stempel-hub")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _opener(redirects: bool):
    jar = http.cookiejar.CookieJar()
    handlers = [urllib.request.HTTPCookieProcessor(jar)] + ([] if redirects else [_NoRedirect()])
    return urllib.request.build_opener(*handlers)


def one_join(base: str, i: int) -> tuple[float, float, float]:
    """(post_s, card_s, total_s) for one new customer."""
    opener = _opener(redirects=False)
    form = opener.open(f"{base}/j/shop").read().decode()
    token = _CSRF.search(form).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "name": f"Guest {i}", "program": "yes"}).encode()
    t0 = time.perf_counter()
    try:
        opener.open(f"{base}/j/shop", body)
        raise RuntimeError("the join did not redirect to the card")
    except urllib.error.HTTPError as answer:
        if answer.code != 303:
            raise RuntimeError(f"join answered {answer.code}: {answer.read()[:300]!r}") from None
        card = answer.headers["Location"]
    t1 = time.perf_counter()
    page = opener.open(card).read()
    t2 = time.perf_counter()
    if b"<svg" not in page:
        raise RuntimeError("the card has no QR")
    return t1 - t0, t2 - t1, t2 - t0


def pcts(values: list[float]) -> dict:
    ms = np.array(values) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def run(backend: str, joins: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-join-{backend}-") as tmp, hub_database(backend, Path(tmp)) as url:
        data, port = Path(tmp) / "hub", free_port()
        base = f"http://127.0.0.1:{port}"
        hub = create_hub(load_hub_config(None, env={}, hub__data_dir=data, hub__db_url=url))
        init_merchant(hub.engine, hub.keys, "shop", "Bench Shop", base)
        hub.close()
        env = {**os.environ, "STEMPEL_HUB_DIR": str(data), "STEMPEL_HUB_DB": url}
        config = Path(tmp) / "hub.toml"
        config.write_text(f"[web]\njoins_per_ip = {joins * 2}\njoins_per_shop = {joins * 2}\n")
        log = open(Path(tmp) / "web.log", "w")
        server = subprocess.Popen([HUB, "--config", str(config), "serve", "--port", str(port), "--workers", "2",
                                   "--insecure-cookies"], env=env, stdout=log, stderr=log)
        try:
            _wait(f"{base}/healthz")
            for i in range(20):  # warm both workers: imports, connections, templates
                one_join(base, -i - 1)
            samples = [one_join(base, i) for i in range(joins)]
            health = []
            for _ in range(joins):
                t0 = time.perf_counter()
                urllib.request.urlopen(f"{base}/healthz").read()
                health.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(15)
            log.close()
    post, card, total = zip(*samples)
    return {"backend": backend, "joins": joins, "join_to_pass": pcts(list(total)), "post": pcts(list(post)),
            "card": pcts(list(card)), "baseline_healthz": pcts(health)}


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise


@click.command()
@click.option("--joins", default=300, show_default=True)
@click.option("--backends", default="sqlite,postgresql", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(joins: int, backends: str, as_json: bool) -> None:
    results = [run(b, joins) for b in backends.split(",")]
    if as_json:
        click.echo(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "results": results}, indent=2))
        return
    click.echo(f"join-to-pass over HTTP, gunicorn 2 workers, {joins} new customers, {os.cpu_count()} CPUs")
    click.echo(f"{'backend':<11} {'join→pass p50':>14} {'p95':>8} {'p99':>8}   {'POST p95':>9} {'card p95':>9}"
               f"   {'/healthz p95':>12}")
    for r in results:
        jp, post, card, base = r["join_to_pass"], r["post"], r["card"], r["baseline_healthz"]
        click.echo(f"{r['backend']:<11} {jp['p50_ms']:>11.1f} ms {jp['p95_ms']:>5.1f} ms {jp['p99_ms']:>5.1f} ms"
                   f"   {post['p95_ms']:>6.1f} ms {card['p95_ms']:>6.1f} ms   {base['p95_ms']:>9.1f} ms")
    missed = [r["backend"] for r in results if r["join_to_pass"]["p95_ms"] >= 100]
    click.echo("target join-to-pass p95 < 100 ms: " + (f"MISSED on {', '.join(missed)}" if missed else "met"))


if __name__ == "__main__":
    main()
