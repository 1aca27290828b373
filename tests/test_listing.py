"""What `sessions list` and `history show` look like: in an 80-column terminal, piped, and for sessions a
LangChain app wrote with tool calls and images."""

from __future__ import annotations

import re
import time
import warnings

LONG_ID = "project-alpha-design-review-2026"


def make_sessions(cli, model) -> None:
    model.script("A long answer about persistence: use AOF with everysec fsync and RDB snapshots too.")
    cli("ask", "-s", LONG_ID, "How do I configure redis persistence for a small deployment with backups?")
    time.sleep(0.01)
    cli("ask", "-s", "w", "hi")


def test_sessions_list_fits_80_columns_ids_whole_times_readable(terminal, cli, model):
    make_sessions(cli, model)
    t = terminal("sessions", "list")
    assert t.exited() == 0
    lines = t.lines()
    assert all(len(line) <= 80 for line in lines)
    header = lines[0].split()
    assert header[:4] == ["session", "messages", "last", "activity"]  # whole words, nothing cut
    assert "title" in header
    rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert set(rows) == {"w", LONG_ID}  # ids never cut
    assert re.search(rf"^{LONG_ID} +2 +\d\d:\d\d +How do I configure", rows[LONG_ID])
    assert rows[LONG_ID].endswith("…")  # the title and the snippet gave way
    assert re.search(r"^w +2 +\d\d:\d\d +hi · echo: hi$", rows["w"])  # the last message beside the title


def test_sessions_list_piped_prints_whole_rows_without_a_frame(cli, model):
    make_sessions(cli, model)
    result = cli.run("sessions", "list")
    assert result.returncode == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == ["w", LONG_ID]
    assert rows[1][1] == "2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[1][2])
    assert rows[1][3].startswith("How do I configure redis persistence for a small")  # the stored title
    assert rows[1][4] == "A long answer about persistence: use AOF with everysec fsync and RDB snapshots too."
    assert "─" not in result.stdout and "session" not in result.stdout  # no frame, no header


def langchain_history(session_id: str, url: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        return RedisChatMessageHistory(session_id, url=url)


def test_a_langchain_apps_tool_calls_and_images_are_shown_and_exported(cli, model, redis_url, tmp_path):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    app = langchain_history("agent", redis_url)
    app.add_message(
        HumanMessage(
            content=[
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + "A" * 4000}},
            ]
        )
    )
    app.add_message(AIMessage(content="", tool_calls=[{"name": "locate", "args": {"photo": 1}, "id": "call_7"}]))
    app.add_message(ToolMessage(content="Paris", tool_call_id="call_7", name="locate"))
    app.add_message(AIMessage(content="Sunny in Paris."))

    shown = cli("history", "show", "agent")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.split("\n\n") == [
        "user\nWeather where this photo was taken?\n[image: image/jpeg, 3.0 kB]",
        'assistant\ntool call: locate {"photo": 1} (id: call_7)',
        "tool\nresult of locate (id: call_7)\nParis",
        "assistant\nSunny in Paris.\n",
    ]
    out = tmp_path / "agent.md"
    assert cli("history", "export", "agent", "-f", "markdown", "-o", str(out)).exit_code == 0
    text = out.read_text()
    assert "*[image: image/jpeg, 3.0 kB]*" in text
    assert '**tool call:** locate (id: call_7)\n\n```json\n{"photo": 1}\n```' in text
    assert "*result of locate (id: call_7)*\n\n```\nParis\n```" in text
