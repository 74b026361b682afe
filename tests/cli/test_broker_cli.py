"""``tidings`` broker commands (publish, tail, topics, dlq, run) against temporary SQLite files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings import App, Retry
from tidings.cli.main import app as cli
from tidings.cli.run import load_app

runner = CliRunner()


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
def dead(url: str) -> str:
    """Topic ``orders``: 4 events; group ``billing`` dead-letters the odd ones, ``audit`` none."""

    async def fill() -> None:
        app = App(url)

        @app.subscribe("orders", group="billing", retry=Retry.never())
        async def bill(event: dict[str, int]) -> None:
            if event["n"] % 2:
                raise ValueError(f"boom {event['n']}")

        @app.subscribe("orders", group="audit")
        async def audit(event: dict[str, int]) -> None:
            pass

        async with app:
            for n in range(4):
                await app.publish("orders", {"n": n}, key=f"k{n}")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while sum(c.dispatcher.handled + c.dispatcher.dead_lettered for c in app.consumers) < 8:
                assert loop.time() < deadline, "handlers did not settle"
                await asyncio.sleep(0.01)

    asyncio.run(fill())
    return url


def dlq_rows(url: str, *extra: str) -> list[dict[str, object]]:
    code, out, err = invoke("dlq", "list", "--json", "--url", url, *extra)
    assert code == 0, err
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def topic_rows(url: str) -> dict[tuple[str, str | None], dict[str, object]]:
    code, out, err = invoke("topics", "--json", "--url", url)
    assert code == 0, err
    return {(r["topic"], r["group"]): r for r in json.loads(out)}


# ------------------------------------------------------------------------- root


def test_cli_help_lists_every_command() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for name in ("run", "publish", "tail", "topics", "dlq", "demo", "store"):
        assert name in out


def test_cli_version_prints_the_package_version() -> None:
    from tidings import __version__

    code, out, _ = invoke("--version")
    assert code == 0
    assert __version__ in out


def test_cli_survives_a_broken_event_browser_module() -> None:
    script = (
        "import sys; sys.modules['tidings.cli.store'] = None\n"
        "from tidings.cli.main import main\n"
        "sys.argv = ['tidings', 'store', 'streams']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "`tidings store` is unavailable" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------- publish, tail


def test_publish_then_tail_from_earliest_sees_every_message(url: str) -> None:
    ids = []
    for n in range(3):
        code, out, err = invoke(
            "publish", "orders", json.dumps({"n": n}), "--key", f"k{n}", "-H", "origin=cli",
            "--type", "shop.OrderPlaced", "--url", url,
        )  # fmt: skip
        assert code == 0, err
        ids.append(out.strip())
    code, out, err = invoke(
        "tail", "orders", "--from", "earliest", "--limit", "3", "--json", "--url", url
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in events] == ids
    assert [e["data"] for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {e["type"] for e in events} == {"shop.OrderPlaced"}
    assert [e["partitionkey"] for e in events] == ["k0", "k1", "k2"]
    assert {e["origin"] for e in events} == {"cli"}


def test_tail_prints_a_rich_line_per_message(url: str) -> None:
    code, out, _ = invoke("publish", "news", '{"headline": "hi"}', "--url", url)
    assert code == 0
    message_id = out.strip()
    code, out, _ = invoke("tail", "news", "--from", "earliest", "-n", "1", "--url", url)
    assert code == 0
    assert message_id in out
    assert "json" in out
    assert '"headline":"hi"' in out


def test_tail_with_a_group_acks_what_it_printed(url: str) -> None:
    for n in range(3):
        assert invoke("publish", "jobs", json.dumps(n), "--url", url)[0] == 0
    args = ("tail", "jobs", "--group", "g", "--from", "earliest", "--json", "--url", url)
    code, out, _ = invoke(*args, "--limit", "2")
    assert code == 0
    assert [json.loads(line)["data"] for line in out.splitlines()] == [0, 1]
    code, out, _ = invoke(*args, "--limit", "1")
    assert code == 0
    assert [json.loads(line)["data"] for line in out.splitlines()] == [2]
    assert topic_rows(url)[("jobs", "g")]["pending"] == 0


def test_tail_default_group_is_deleted_on_exit(url: str) -> None:
    assert invoke("publish", "jobs", "1", "--url", url)[0] == 0
    assert invoke("tail", "jobs", "--from", "earliest", "-n", "1", "--url", url)[0] == 0
    assert invoke("publish", "jobs", "2", "--url", url)[0] == 0
    rows = topic_rows(url)
    assert [g for (t, g) in rows if t == "jobs" and g and g.startswith("tail-")] == []


def test_tail_stops_on_sigterm_and_empties_its_group(url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", "tail", "jobs", "--url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(g and g.startswith("tail-") for _, g in topic_rows(url)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "tail never joined the topic"
            time.sleep(0.05)
        assert invoke("publish", "jobs", '{"n": 1}', "--url", url)[0] == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert [g for (_, g) in topic_rows(url) if g and g.startswith("tail-")] == []


def test_publish_rejects_invalid_json_with_exit_2(url: str) -> None:
    code, _, err = invoke("publish", "orders", "{not json", "--url", url)
    assert code == 2
    assert "not valid JSON" in err
    assert "Traceback" not in err


def test_publish_rejects_a_header_without_value_with_exit_2(url: str) -> None:
    code, _, err = invoke("publish", "orders", "{}", "--header", "novalue", "--url", url)
    assert code == 2
    assert "name=value" in err


def test_publish_accepts_delay_and_ttl(url: str) -> None:
    args = ("publish", "later", '{"x": 1}', "--delay", "3600", "--ttl", "7200", "--url", url)
    code, _, _ = invoke(*args)
    assert code == 0
    assert topic_rows(url)[("later", None)]["messages"] == 1


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args",
    [
        ("topics",),
        ("publish", "t", "{}"),
        ("tail", "t", "-n", "1"),
        ("dlq", "list"),
        ("dlq", "replay", "--all"),
    ],
)
def test_bad_url_scheme_exits_2_with_one_line(args: tuple[str, ...]) -> None:
    code, out, err = invoke(*args, "--url", "nope://somewhere")
    assert code == 2
    assert "unknown broker URL scheme 'nope'" in err
    assert "Traceback" not in err + out


def test_unreachable_sqlite_broker_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("topics", "--url", f"sqlite:///{tmp_path}/missing/dir/t.db")
    assert code == 2
    assert err.startswith("error:")
    assert len(err.strip().splitlines()) == 1


def test_url_comes_from_the_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_BROKER_URL", url)
    assert invoke("publish", "env", "{}")[0] == 0
    assert topic_rows(url)[("env", None)]["messages"] == 1


# ------------------------------------------------------------------------- topics


def test_topics_shows_counts_pending_and_dead_letters(dead: str) -> None:
    rows = topic_rows(dead)
    billing = rows[("orders", "billing")]
    assert billing["messages"] == 4
    assert billing["pending"] == 0
    assert billing["dead_letters"] == 2
    assert rows[("orders", "audit")]["dead_letters"] == 0
    assert not any(t.endswith(".dlq") for t, _ in rows)
    code, out, _ = invoke("topics", "--url", dead)
    assert code == 0
    assert "orders" in out
    assert "billing" in out
    code, out, _ = invoke("topics", "--all", "--url", dead)
    assert "orders.billing.dlq" in out


def test_topics_on_an_empty_broker_says_so(url: str) -> None:
    code, out, _ = invoke("topics", "--url", url)
    assert code == 0
    assert "no topics" in out


# ------------------------------------------------------------------------- dlq


def test_dlq_list_shows_reason_attempts_and_error(dead: str) -> None:
    rows = dlq_rows(dead)
    assert len(rows) == 2
    assert {r["group"] for r in rows} == {"billing"}
    assert {r["reason"] for r in rows} == {"failed"}
    assert {r["attempts"] for r in rows} == {1}
    assert sorted(str(r["error"]) for r in rows) == ["boom 1", "boom 3"]
    assert dlq_rows(dead, "--group", "audit") == []
    assert len(dlq_rows(dead, "--limit", "1")) == 1
    code, out, _ = invoke("dlq", "list", "--url", dead)
    assert code == 0
    assert "boom 1" in out


def test_dlq_show_prints_headers_error_traceback_and_body(dead: str) -> None:
    row = dlq_rows(dead)[0]
    code, out, _ = invoke("dlq", "show", str(row["id"]), "--url", dead)
    assert code == 0
    assert str(row["id"]) in out
    assert "ValueError" in out
    assert "Traceback" in out
    assert "ce-type" in out
    assert '"n":' in out
    code, out, _ = invoke("dlq", "show", str(row["id"]), "--json", "--url", dead)
    shown = json.loads(out)
    assert shown["error_type"] == "ValueError"
    assert json.loads(shown["body"]) in ({"n": 1}, {"n": 3})


def test_dlq_show_unknown_id_exits_2(dead: str) -> None:
    code, _, err = invoke("dlq", "show", "nope", "--url", dead)
    assert code == 2
    assert "no dead letter with id 'nope'" in err


@pytest.mark.parametrize("verb", ["replay", "purge"])
def test_dlq_replay_and_purge_refuse_without_a_selection(dead: str, verb: str) -> None:
    code, _, err = invoke("dlq", verb, "--url", dead)
    assert code == 2
    assert "--all" in err
    assert len(dlq_rows(dead)) == 2


def test_dlq_replay_by_id_sends_it_back_to_the_failed_group(dead: str) -> None:
    first, second = dlq_rows(dead)
    code, out, _ = invoke("dlq", "replay", "--id", str(first["id"]), "--url", dead)
    assert code == 0
    assert "replayed 1" in out
    assert [r["id"] for r in dlq_rows(dead)] == [second["id"]]
    assert topic_rows(dead)[("orders", "billing")]["pending"] == 1


def test_dlq_replay_all_empties_the_dead_letters(dead: str) -> None:
    code, out, _ = invoke("dlq", "replay", "--all", "--url", dead)
    assert code == 0
    assert "replayed 2" in out
    assert dlq_rows(dead) == []


def test_dlq_replay_unknown_id_exits_1(dead: str) -> None:
    code, _, err = invoke("dlq", "replay", "--id", "nope", "--url", dead)
    assert code == 1
    assert "not dead letters" in err


def test_dlq_purge_asks_first_and_aborts_on_no(dead: str) -> None:
    code, _, _ = invoke("dlq", "purge", "--all", "--url", dead, input="n\n")
    assert code == 1
    assert len(dlq_rows(dead)) == 2


def test_dlq_purge_by_id_and_all_with_yes(dead: str) -> None:
    first, _ = dlq_rows(dead)
    code, out, _ = invoke("dlq", "purge", "--id", str(first["id"]), "--url", dead, input="y\n")
    assert code == 0
    assert "purged 1" in out
    code, out, _ = invoke("dlq", "purge", "--group", "billing", "--yes", "--url", dead)
    assert code == 0
    assert "purged 1" in out
    assert dlq_rows(dead) == []


# ------------------------------------------------------------------------- run


SERVICE = """
import asyncio
from pathlib import Path

from tidings import App

app = App()
log = Path(__file__).with_name("handled.log")


@app.subscribe("jobs", group="workers", start="earliest")
async def work(event: dict) -> None:
    with log.open("a") as f:
        f.write(f"start {event['n']}\\n")
    await asyncio.sleep(0.5)
    with log.open("a") as f:
        f.write(f"done {event['n']}\\n")


def make_app() -> App:
    return app


not_an_app = 42
"""


def test_run_serves_until_sigterm_and_drains(tmp_path: Path, url: str) -> None:
    (tmp_path / "svc_drain.py").write_text(SERVICE)

    async def publish() -> None:
        async with App(url) as app:
            await app.transport.ensure_group("jobs", "workers")
            for n in range(3):
                await app.publish("jobs", {"n": n})

    asyncio.run(publish())
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", "run", "svc_drain:app", "--url", url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    log = tmp_path / "handled.log"
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "start" in log.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = log.read_text().splitlines()
    started = {line.split()[1] for line in lines if line.startswith("start")}
    done = {line.split()[1] for line in lines if line.startswith("done")}
    assert started
    assert started == done
    assert "drained" in err


def test_run_rejects_a_target_without_colon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("run", "justamodule")
    assert code == 2
    assert "expected module:attribute" in err


def test_run_reports_a_missing_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("run", "no_such_module_here:app")
    assert code == 2
    assert "could not import module 'no_such_module_here'" in err


def test_run_reports_a_missing_attribute_and_a_non_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "svc_errors.py").write_text(SERVICE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = invoke("run", "svc_errors:nothing")
    assert code == 2
    assert "has no attribute 'nothing'" in err
    code, _, err = invoke("run", "svc_errors:not_an_app")
    assert code == 2
    assert "not a tidings App" in err


async def test_load_app_accepts_a_factory_and_overrides_the_url(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "svc_factory.py").write_text(SERVICE.replace("App()", 'App("memory://")'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TIDINGS_BROKER_URL", "memory://")
    app = await load_app("svc_factory:make_app", url)
    try:
        assert app.url == url
        assert all(c.dispatcher.app is app for c in app.consumers)
        assert app.transport.url == url
    finally:
        await app.transport.close()
