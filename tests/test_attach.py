"""Attachments: `ask -f PATH` and `/attach PATH` send files as LangChain content blocks and store them so."""

from __future__ import annotations

import base64
import json

import pytest

from chatcli import codec
from chatcli.compose import IMAGE_LIMIT, TEXT_LIMIT, image_type

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def stored(rdb, session: str) -> list[dict]:
    return [json.loads(raw) for raw in reversed(rdb.lrange(f"message_store:{session}", 0, -1))]


def png_block(data: bytes = PNG) -> dict:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(data).decode()}}


def test_ask_sends_text_files_with_their_name_and_images_as_data_urls(cli, model, rdb, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline ``` two\n")
    image = tmp_path / "shot.png"
    image.write_bytes(PNG)
    result = cli("ask", "-s", "att", "-f", str(notes), "--file", str(image), "what is in these?")
    assert result.exit_code == 0, result.stderr
    blocks = [
        {"type": "text", "text": "what is in these?"},
        {"type": "text", "text": f"File: {notes}\n\n````\nline one\nline ``` two\n````"},
        png_block(),
    ]
    assert model.last_messages()[-1] == {"role": "user", "content": blocks}
    question, answer = stored(rdb, "att")
    assert question["type"] == "human" and question["data"]["content"] == blocks
    assert codec.problem(question) is None and codec.problem(answer) is None
    from langchain_core.messages import messages_from_dict

    assert messages_from_dict([question])[0].content == blocks  # what a LangChain app reads back


def test_ask_attaches_stdin_with_a_dash(cli, model, rdb):
    result = cli("ask", "-s", "att2", "-f", "-", "summarise", input="piped\ntext\n")
    assert result.exit_code == 0, result.stderr
    blocks = [{"type": "text", "text": "summarise"}, {"type": "text", "text": "File: stdin\n\n```\npiped\ntext\n```"}]
    assert model.last_messages()[-1]["content"] == blocks
    assert stored(rdb, "att2")[0]["data"]["content"] == blocks


def test_a_question_without_attachments_is_still_plain_text(cli, model, rdb):
    assert cli("ask", "-s", "plain", "hello {there}").exit_code == 0
    assert model.last_messages()[-1] == {"role": "user", "content": "hello {there}"}
    assert stored(rdb, "plain")[0]["data"]["content"] == "hello {there}"


@pytest.mark.parametrize(
    ("make", "needle", "code"),
    [
        (lambda p: p.mkdir(), "it is a directory", 2),
        (lambda p: p.write_bytes(b"\x7fELF\x00\x01binary"), "a binary file (text files up to 512 KiB", 2),
        (lambda p: p.write_bytes(b"\xff\xfe not utf-8"), "a binary file", 2),
        (lambda p: p.write_text("x" * (TEXT_LIMIT + 1)), "over the 512 KiB limit for a text file", 2),
        (lambda p: p.write_bytes(PNG + bytes(IMAGE_LIMIT)), "over the 5.0 MiB limit for an image", 2),
        (lambda p: None, "no such file", 5),
    ],
)
def test_what_cannot_be_attached_is_a_clear_error_and_nothing_is_sent_or_stored(
    cli, model, rdb, tmp_path, make, needle, code
):
    path = tmp_path / "thing"
    make(path)
    result = cli("ask", "-s", "bad", "-f", str(path), "look")
    assert result.exit_code == code
    assert needle in result.stderr and str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert model.chat_requests() == [] and rdb.exists("message_store:bad") == 0


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"GIF87a", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"plain text", None),
    ],
)
def test_images_are_known_by_their_first_bytes(head, mime):
    assert image_type(head + b"\x00" * 16) == mime


def test_slash_attach_completes_paths_and_goes_with_the_next_message(terminal, model, rdb, tmp_path, monkeypatch):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "report-2026.md").write_text("# Report\n")
    monkeypatch.chdir(folder)
    t = terminal("chat", "-s", "ra")
    t.wait_prompt("ra", 1)
    t.type("/attach rep\t")  # Tab completes the path
    t.wait_for("ra> /attach report-2026.md")
    t.enter()
    t.wait_for("attached to your next message: report-2026.md")
    t.enter("read it")
    t.wait_for("echo: read it")
    blocks = [
        {"type": "text", "text": "read it"},
        {"type": "text", "text": "File: report-2026.md\n\n```\n# Report\n```"},
    ]
    assert model.last_messages()[-1]["content"] == blocks
    t.wait_prompt("ra", 3)
    t.enter("and now?")  # the attachment went with one message only
    t.wait_for("echo: and now?")
    assert model.last_messages()[-1]["content"] == "and now?"
    t.wait_prompt("ra", 4)  # the turn is stored once the next prompt is drawn
    assert [m["data"]["content"] for m in stored(rdb, "ra")][::2] == [blocks, "and now?"]
