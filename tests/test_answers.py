"""Answers as the model wrote them, in-process on a recording Rich console (80 columns): line breaks, links,
reasoning apart from the answer, tool calls and attachments in a stored conversation."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from chatcli import contents, exporting
from chatcli.reasoning import ThinkSplitter, for_model, split_think
from chatcli.render import GUTTER, MarkdownAnswer, Reasoning, markdown, print_messages

FIVE = "Here are 5 lines:\nRoses are red\nViolets are blue\nSugar is sweet\nAnd so are you\n"


def console(terminal: bool = True, **options) -> Console:
    """A recording console. Streams are drawn on one that is not a terminal: Rich then records no transient
    live region, only what stays (the pty tests see the live region)."""
    return Console(
        file=io.StringIO(), record=True, width=80, force_terminal=terminal, color_system="standard", **options
    )


def screen(con: Console) -> list[str]:
    return [line.rstrip() for line in con.export_text(clear=False).rstrip("\n").split("\n")]


def stream(con: Console, pieces: list[tuple[str, str]], **options) -> MarkdownAnswer:
    answer = MarkdownAnswer(con, **options)
    for kind, piece in pieces:
        (answer.think if kind == "think" else answer.write)(piece)
    answer.finish()
    return answer


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# -- line breaks -----------------------------------------------------------------------------------------------


def test_a_single_newline_is_a_line_break():
    con = console()
    con.print(markdown(FIVE + "\n- a list\n- stays a list\n\n# and a heading\n"))
    shown = screen(con)
    assert shown[:-1] == [
        "Here are 5 lines:",
        "Roses are red",
        "Violets are blue",
        "Sugar is sweet",
        "And so are you",
        "",
        " • a list",
        " • stays a list",
        "",
    ]
    assert shown[-1].strip() == "and a heading"  # centred, as Rich shows a heading


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_a_streamed_answer_keeps_its_lines_however_it_arrives(size):
    con = console(terminal=False)
    stream(con, [("text", piece) for piece in chunks(FIVE, size)])
    assert screen(con) == FIVE.rstrip("\n").split("\n")


def test_a_long_paragraph_is_printed_as_it_streams_and_never_cut_or_joined():
    lines = [f"line {i:02d} of a long poem, which goes on for a while" for i in range(40)]
    text = "\n".join(lines) + "\n"
    con = console(terminal=False)
    answer = MarkdownAnswer(con)
    for piece in chunks(text, 5):
        answer.write(piece)
    assert "line 00" in con.export_text(clear=False)  # printed for good before the answer ends
    answer.finish()
    assert screen(con) == lines


def test_links_keep_their_url_visible_and_write_no_hyperlink_sequence():
    con = console()
    con.print(markdown("Read [the guide](https://example.com/guide), or <https://x.org>.\n![chart](http://a.b/c.png)"))
    assert screen(con) == [
        "Read the guide (https://example.com/guide), or https://x.org.",
        "[image: chart] (http://a.b/c.png)",
    ]
    out = con.file.getvalue()
    assert "\x1b]8;" not in out  # no OSC-8: the address is text, visible in tmux and in a copy


# -- reasoning ---------------------------------------------------------------------------------------------------


def ansi_line(con: Console, needle: str) -> str:
    """The line holding `needle`, with its SGR codes."""
    return next(line for line in con.export_text(clear=False, styles=True).split("\n") if needle in line)


def test_streamed_reasoning_is_shown_dim_behind_a_gutter_then_the_answer_apart():
    con = console(terminal=False)
    thought = "\nThe user wants lines.\nFive of them.\n\nShort ones."  # no newline before the answer
    stream(con, [("think", p) for p in chunks(thought, 3)] + [("text", p) for p in chunks(FIVE, 3)])
    assert screen(con) == [
        f"{GUTTER}The user wants lines.",
        f"{GUTTER}Five of them.",
        GUTTER.rstrip(),
        f"{GUTTER}Short ones.",
        "",
        *FIVE.rstrip("\n").split("\n"),
    ]
    assert "\x1b[2;3mFive of them" in ansi_line(con, "Five of them")  # dim italic
    assert "\x1b[2" not in ansi_line(con, "Violets")


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_a_think_block_in_the_answer_is_shown_as_reasoning_without_its_tags(size):
    con = console(terminal=False)
    text = "<think>\nhmm, five lines\n</think>\n\n" + FIVE
    stream(con, [("text", p) for p in chunks(text, size)])
    assert screen(con) == [f"{GUTTER}hmm, five lines", "", *FIVE.rstrip("\n").split("\n")]


def test_hidden_reasoning_is_not_shown_and_the_spinner_says_thinking():
    class Spinner:
        def __init__(self):
            self.said, self.stopped = [], False

        def update(self, text):
            self.said.append(text)

        def stop(self):
            self.stopped = True

    spinner = Spinner()
    con = console(terminal=False)
    answer = MarkdownAnswer(con, show_reasoning=False, waiting=spinner)
    answer.think("secret plan\n")
    answer.write("<think>more plans</think>")
    assert spinner.said and set(spinner.said) == {"thinking"} and not spinner.stopped
    answer.write("Done.")
    answer.finish()
    assert spinner.stopped
    assert screen(con) == ["Done."]


@pytest.mark.parametrize(
    "text",
    [
        "<think>a\nb</think>\n\nanswer <think> not reasoning </think>",
        "  \n<think>only thinking, cut off",
        "no thinking here <think>x</think>",
        "<thinking>is not the tag</thinking>",
        "<thi",
        "",
    ],
)
def test_the_think_splitter_gives_the_same_runs_however_the_text_is_cut(text):
    whole = split_think(text)
    for size in (1, 2, 3, 5):
        splitter = ThinkSplitter()
        runs = [run for piece in chunks(text, size) for run in splitter.feed(piece)] + splitter.flush()
        assert ("".join(t for r, t in runs if r), "".join(t for r, t in runs if not r)) == whole


def test_split_think_only_takes_a_block_at_the_start():
    assert split_think("<think>a\nb</think>\n\nanswer") == ("a\nb", "\n\nanswer")
    assert split_think("say <think>x</think>") == ("", "say <think>x</think>")
    assert split_think("<think>unfinished") == ("unfinished", "")


def test_what_later_turns_send_has_no_reasoning_and_the_stored_entry_is_untouched():
    entry = {
        "type": "ai",
        "data": {
            "content": "<think>private</think>\n\nThe answer.",
            "additional_kwargs": {"reasoning_content": "also private", "other": 1},
        },
    }
    before = repr(entry)
    sent = for_model(entry)
    assert sent["data"]["content"] == "The answer."
    assert sent["data"]["additional_kwargs"] == {"other": 1}
    assert repr(entry) == before
    user = {"type": "human", "data": {"content": "<think>mine</think> keep it"}}
    assert for_model(user) is user


# -- stored conversations: tool calls, images, files ---------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
CONVERSATION = [
    {
        "type": "human",
        "data": {
            "content": [
                {"type": "text", "text": "What is in this picture?\nAnd in the report?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {
                    "type": "file",
                    "source_type": "base64",
                    "mime_type": "application/pdf",
                    "data": "QUJD" * 300,
                    "filename": "report.pdf",
                },
                {"type": "image", "url": "https://example.com/cat.jpg"},
            ]
        },
    },
    {
        "type": "ai",
        "data": {
            "content": "",
            "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}],
        },
    },
    {
        "type": "tool",
        "data": {"content": '{"temp": 22}', "tool_call_id": "call_1", "name": "get_weather"},
    },
    {
        "type": "ai",
        "data": {
            "content": "It is **22 °C**.\nSunny.",
            "additional_kwargs": {"reasoning_content": "Convert nothing.\nSay it."},
        },
    },
]


TOOL_TURN = [  # the second and third messages, as shown on a terminal and piped alike
    "assistant",
    'tool call: get_weather {"city": "Paris"} (id: call_1)',
    "",
    "tool",
    "result of get_weather (id: call_1)",
    '{"temp": 22}',
    "",
    "assistant",
]


def test_parts_show_images_and_files_as_one_line_placeholders():
    parts = contents.parts(CONVERSATION[0])
    assert [(p.kind, p.text) for p in parts] == [
        ("text", "What is in this picture?\nAnd in the report?"),
        ("attachment", "[image: image/png, 70 B]"),
        ("attachment", "[file: report.pdf, application/pdf, 900 B]"),
        ("attachment", "[image: https://example.com/cat.jpg]"),
    ]


def test_tool_calls_are_read_from_langchain_and_openai_layouts():
    langchain = contents.tool_calls(CONVERSATION[1])
    openai_style = contents.tool_calls(
        {
            "type": "ai",
            "data": {
                "content": "",
                "additional_kwargs": {
                    "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
                },
            },
        }
    )
    assert [c.line() for c in langchain] == ['tool call: get_weather {"city": "Paris"} (id: call_1)']
    assert [c.line() for c in openai_style] == ['tool call: f {"x": 1} (id: c9)']


def test_history_on_a_terminal_shows_tool_calls_results_attachments_reasoning_and_lines():
    con = console()
    print_messages(con, CONVERSATION)
    assert screen(con) == [
        "user",
        "What is in this picture?",
        "And in the report?",
        "[image: image/png, 70 B]",
        "[file: report.pdf, application/pdf, 900 B]",
        "[image: https://example.com/cat.jpg]",
        "",
        *TOOL_TURN,
        f"{GUTTER}Convert nothing.",
        f"{GUTTER}Say it.",
        "",
        "It is 22 °C.",
        "Sunny.",
    ]


def test_history_without_reasoning_and_piped():
    hidden = console()
    print_messages(hidden, CONVERSATION[3:], show_reasoning=False)
    assert screen(hidden) == ["assistant", "It is 22 °C.", "Sunny."]
    piped = console(terminal=False)
    print_messages(piped, CONVERSATION[1:])
    assert screen(piped) == [
        *TOOL_TURN,
        "It is **22 °C**.",  # piped: the text as stored
        "Sunny.",
    ]


def test_markdown_export_shows_tool_calls_results_attachments_and_reasoning():
    out = io.StringIO()
    exporting.write_markdown(out, "s", CONVERSATION)
    text = out.getvalue()
    assert "*[image: image/png, 70 B]*" in text and "*[file: report.pdf, application/pdf, 900 B]*" in text
    assert '**tool call:** get_weather (id: call_1)\n\n```json\n{"city": "Paris"}\n```' in text
    assert '## tool\n\n*result of get_weather (id: call_1)*\n\n```\n{"temp": 22}\n```' in text
    assert "<details><summary>reasoning</summary>\n\nConvert nothing.\nSay it.\n\n</details>" in text
    assert "It is **22 °C**.\nSunny." in text


def test_a_long_line_of_reasoning_is_printed_row_by_row_as_it_streams():
    words = " ".join(f"thought{i}" for i in range(150))  # one line, many rows wide
    whole = console(terminal=False)
    whole.print(Reasoning(words))
    con = console(terminal=False)
    answer = MarkdownAnswer(con)
    for piece in chunks(words, 5):
        answer.think(piece)
    assert "thought0 " in con.export_text(clear=False)  # rows printed before the line ends
    answer.write("Done.")
    answer.finish()
    assert screen(con) == [*screen(whole), "", "Done."]


@pytest.mark.parametrize(
    ("part", "line"),
    [
        ({"type": "image", "base64": "QUJD" * 500, "mime_type": "image/webp"}, "[image: image/webp, 1.5 kB]"),
        (
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
            "[image: image/gif, 3 B]",
        ),
        ({"type": "file", "file_id": "file-abc"}, "[file: id file-abc]"),
        (
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,QUJD"}},
            "[file: a.pdf, application/pdf, 3 B]",
        ),
        ({"type": "input_audio", "input_audio": {"data": "QUJDRA==", "format": "wav"}}, "[audio: wav, 4 B]"),
        (
            {"type": "text-plain", "text": "notes", "mime_type": "text/plain", "extras": {"filename": "n.txt"}},
            "[text file: n.txt, text/plain]",
        ),
        ({"type": "something_new"}, "[something new]"),
    ],
)
def test_a_placeholder_names_what_the_part_is_in_each_layout(part, line):
    assert contents.placeholder(part) == line
