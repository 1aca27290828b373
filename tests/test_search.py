"""chatcli search: the query, matching and snippets in-process; the command end to end on a real Redis
(single node and the 3-master cluster), over sessions chatcli wrote and sessions other programs wrote."""

from __future__ import annotations

import io
import json
import random
import time

import pytest
from rich.console import Console

from chatcli import render
from chatcli.errors import UsageError
from chatcli.matching import Snippet, make_snippet, match_spans, parse_query, parse_since, searchable_text
from chatcli.search import FILTER_SLICE, Hit, Search, keep_indexes, show

INDEX = "chatcli:index:{message_store:}"


def lc(kind: str, content: object, **data: object) -> str:
    """An element as LangChain's RedisChatMessageHistory writes it (json.dumps, ASCII escapes)."""
    return json.dumps({"type": kind, "data": {"content": content, **data}})


# -- the query, matching, snippets (in-process) ---------------------------------------------------------


def test_a_query_is_words_and_quoted_phrases_in_any_case():
    q = parse_query('Redis  "Hash   TAG" cluster redis "unclosed  Phrase')
    assert q.words == ("redis", "cluster")  # a word once, in order
    assert q.phrases == ("hash tag", "unclosed phrase")
    for empty in ["", "   ", '""', '" "']:
        with pytest.raises(UsageError, match="empty"):
            parse_query(empty)
    with pytest.raises(UsageError, match="control"):
        parse_query("a\x1b[31mb")


def test_every_word_must_occur_a_phrase_as_written_white_space_and_case_aside():
    text = "The quick brown Fox jumps over the lazy dog"
    assert match_spans(parse_query("fox QUICK"), text) == [(4, 9), (16, 19)]
    assert match_spans(parse_query("fox cat"), text) is None  # all words, not any
    assert match_spans(parse_query('"quick brown"'), text) == [(4, 15)]
    assert match_spans(parse_query('"quick fox"'), text) is None  # a phrase is in this order, adjacent
    assert match_spans(parse_query("quick fox"), text) is not None
    assert match_spans(parse_query("the"), text) == [(0, 3), (31, 34)]  # every occurrence
    assert match_spans(parse_query("ump"), text) == [(21, 24)]  # words are substrings
    # stored text with newlines and tabs: the phrase still matches (searchable_text makes one line)
    entry = {"type": "human", "data": {"content": [{"type": "text", "text": "quick\n\tbrown"}, "fox"]}}
    assert searchable_text(entry) == "quick brown fox"
    assert match_spans(parse_query('"brown fox"'), searchable_text(entry)) == [(6, 15)]


def test_letters_that_lower_to_two_characters_keep_their_highlight_on_the_original_text():
    text = "İstanbul and KELVIN \u212aelvin"
    spans = match_spans(parse_query("stanbul kelvin"), text)
    assert spans is not None
    assert [text[s:e] for s, e in spans] == ["stanbul", "KELVIN", "\u212aelvin"]


def test_a_snippet_is_a_window_around_the_first_match_with_its_highlights():
    text = " ".join(f"w{i}" for i in range(200)) + " needle " + " ".join(f"x{i}" for i in range(200))
    snippet = make_snippet(text, match_spans(parse_query("needle"), text) or [], width=80)
    assert len(snippet.text) <= 82 and snippet.text.startswith("…") and snippet.text.endswith("…")
    assert [snippet.text[s:e] for s, e in snippet.spans] == ["needle"]
    assert make_snippet("short needle", [(6, 12)]) == Snippet("short needle", [(6, 12)])


def test_a_hit_on_a_terminal_is_highlighted_and_inert():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system="truecolor")
    text = "bad \x1b]0;pwned\x07 title \x1b[2J then the needle here"
    spans = match_spans(parse_query("needle"), text) or []
    render.print_hit(console, Hit("s1", 3, "assistant", time.time(), True, None, make_snippet(text, spans)))
    shown = out.getvalue()
    assert "pwned" not in shown and "\x1b]" not in shown and "\x1b[2J" not in shown
    assert "\x1b[1;7mneedle\x1b[0m" in shown  # bold reverse on the match, and only there
    assert "s1" in shown and "assistant #3" in shown
    piped = io.StringIO()
    render.print_hit(Console(file=piped), Hit("s 1", 3, "user", 0.0, True, None, Snippet("a\x1b[2Jb", [])))
    assert piped.getvalue() == "s 1\t1970-01-01T00:00:00Z\tuser\t3\tab\n"


def test_since_is_a_duration_back_or_a_date():
    assert parse_since("2d", now=1_000_000.0) == 1_000_000.0 - 2 * 86400
    assert parse_since("2026-11-01T00:00:00Z") == 1793491200.0
    for bad in ["yesterday", "2026-13-01", "-3d", "0s", ""]:
        with pytest.raises(UsageError, match="--since"):
            parse_since(bad)


# -- the filter Redis runs and the one run here agree, and never drop a hit --------------------------------


def random_element(rng: random.Random) -> bytes:
    vocabulary = ["Redis", "REDIS", "redis", "clúster", "hash", "tag", "\u212aelvin", "İd", "x/y", "a\\b", 'q"t']
    words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 6))]
    content = rng.choice([" ", "\n", "\t"]).join(words)
    kind = rng.choice(["human", "ai"])
    if rng.random() < 0.5:  # chatcli writes UTF-8, LangChain ASCII escapes
        return json.dumps({"type": kind, "data": {"content": content}}, ensure_ascii=False).encode()
    return json.dumps({"type": kind, "data": {"content": content}}).encode()


@pytest.mark.parametrize("query", ["redis", "hash tag", '"tag redis"', "kelvin", "i", "x/y", "clúster", 'q"t'])
def test_the_lua_filter_and_the_local_one_keep_the_same_superset_of_the_hits(rdb, query):
    rng = random.Random(query)
    items = [random_element(rng) for _ in range(300)]
    rdb.rpush("message_store:f", *items)  # element 0 is the newest (head)
    parsed = parse_query(query)
    words = parsed.filter_words()
    here = keep_indexes(items, words)
    result = rdb.eval(FILTER_SLICE, 1, "message_store:f", 0, 10**9, 128, *words)
    assert result[0] == 0 and result[1] == len(items)
    in_redis = sorted(len(items) - int(n) for n in result[3::2])  # message numbers -> head indexes
    assert in_redis == here
    hits = [i for i, raw in enumerate(items) if match_spans(parsed, searchable_text(json.loads(raw))) is not None]
    assert hits and set(hits) <= set(here)
    if words:
        assert len(here) < len(items)  # the filter does filter


# -- end to end ---------------------------------------------------------------------------------------------


def search_json(cli, *args: str) -> dict:
    result = cli("search", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def found(cli, *args: str) -> list[tuple[str, int, str]]:
    return [(h["session"], h["message"], h["role"]) for h in search_json(cli, *args)["hits"]]


@pytest.fixture
def sessions(cli, model, rdb):
    """Three sessions chatcli wrote (oldest: old, then mid, then new) and one another program wrote."""
    for sid, questions in [
        ("old", ["the quick brown fox", "nothing here"]),
        ("mid", ["a lazy dog sleeps", "quick question about foxes"]),
        ("new", ["Fox and QUICK", "the brown fox is quick"]),
    ]:
        for q in questions:
            assert cli("ask", "-s", sid, q).exit_code == 0
        time.sleep(0.01)  # distinct activity times
    rdb.rpush("message_store:lc-app", lc("ai", "a quick fox from elsewhere"), lc("human", "tell me"))
    return rdb


@pytest.mark.any_redis
@pytest.mark.parametrize("side", ["here", "redis"])
def test_hits_come_newest_session_first_each_newest_message_first(cli, sessions, side, is_cluster, rdb):
    if is_cluster:  # the sessions really live on more than one primary
        assert len({rdb.get_node_from_key(f"message_store:{s}").name for s in ["old", "mid", "new"]}) > 1
    hits = found(cli, "quick fox", "--filter", side)
    # answers are "echo: " + the question: each question gives two hits, the answer (newer) first
    assert hits == [
        ("new", 4, "assistant"),
        ("new", 3, "user"),
        ("new", 2, "assistant"),
        ("new", 1, "user"),
        ("mid", 4, "assistant"),
        ("mid", 3, "user"),
        ("old", 2, "assistant"),
        ("old", 1, "user"),
    ]
    doc = search_json(cli, "quick fox", "--filter", side)
    first = doc["hits"][0]
    assert first["snippet"] == "echo: the brown fox is quick"
    assert [first["snippet"][s:e] for s, e in first["highlights"]] == ["fox", "quick"]
    assert first["continue"] == "chatcli chat -s new" and first["id"].endswith("-1")
    assert doc["stats"]["filter"] == side and doc["stats"]["sessions"] == 3
    # another program's session only with --all, after the indexed ones, and said to be unindexed
    every = search_json(cli, "quick fox", "--all", "--filter", side)["hits"]
    assert [(h["session"], h["message"], h["indexed"]) for h in every[-2:]] == [("old", 1, True), ("lc-app", 2, False)]


@pytest.mark.any_redis
def test_a_phrase_is_exact_words_are_all_required(cli, sessions):
    assert {h[0] for h in found(cli, '"brown fox"')} == {"new", "old"}
    assert found(cli, '"fox and quick"') == [("new", 2, "assistant"), ("new", 1, "user")]
    assert found(cli, '"quick fox"') == []  # no message has those words adjacent in that order
    assert found(cli, "lazy fox") == []  # both words in one message, not one in each
    assert {h[0] for h in found(cli, "lazy")} == {"mid"}
    # words as separate arguments, as the shell splits `chatcli search quick fox`: the same as one argument
    assert found(cli, "quick", "fox") == found(cli, "quick fox") != []
    assert found(cli, "fox", '"fox and quick"') == found(cli, '"fox and quick"')


@pytest.mark.any_redis
def test_role_since_session_and_limit_narrow_the_hits(cli, sessions):
    assert found(cli, "quick fox", "--role", "user") == [
        ("new", 3, "user"),
        ("new", 1, "user"),
        ("mid", 3, "user"),
        ("old", 1, "user"),
    ]
    assert all(h[2] == "assistant" for h in found(cli, "quick fox", "--role", "assistant"))
    sessions.zadd(INDEX, {"old": time.time() - 3 * 86400})  # idle three days
    assert {h[0] for h in found(cli, "quick fox", "--since", "2d")} == {"new", "mid"}
    assert {h[0] for h in found(cli, "quick fox", "--since", "4d")} == {"new", "mid", "old"}
    assert found(cli, "quick fox", "--session", "mid") == [("mid", 4, "assistant"), ("mid", 3, "user")]
    assert found(cli, "quick", "--session", "lc-app") == [("lc-app", 2, "assistant")]  # unindexed, by name
    doc = search_json(cli, "quick fox", "--limit", "3")
    assert len(doc["hits"]) == 3 and doc["stats"]["complete"] is False
    assert len(search_json(cli, "quick fox", "--limit", "0")["hits"]) == 8


@pytest.mark.any_redis
def test_the_human_view_lists_hits_and_how_to_continue(cli, sessions):
    result = cli("search", "lazy")
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("mid", "assistant", "2", "echo: a lazy dog sleeps"),
        ("mid", "user", "1", "a lazy dog sleeps"),
    ]
    assert "2 hits" in result.stderr and "chatcli chat -s mid" in result.stderr
    none = cli("search", "zanzibar")
    assert none.exit_code == 0 and none.stdout == "" and "no messages match" in none.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "query is empty"),
        (["fox", "--since", "yesterday"], "invalid --since"),
        (["fox", "--role", "system"], "--role must be user or assistant"),
        (["fox", "--filter", "gpu"], "--filter must be"),
        (["fox", "--session", "a{b}"], "may not contain"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(cli, sessions, args, message):
    before = sorted(sessions.keys("*"))
    result = cli.run("search", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert sorted(sessions.keys("*")) == before


def test_nothing_stored_is_no_hit_and_no_error(cli, redis_url):
    result = cli("search", "fox")
    assert result.exit_code == 0, result.stderr
    assert "no messages match (0 messages in 0 sessions" in result.stderr and result.stdout == ""


def test_an_unknown_session_is_not_found(cli, sessions):
    result = cli("search", "fox", "--session", "nope")
    assert result.exit_code == 5 and "no session named 'nope'" in result.stderr


@pytest.mark.any_redis
def test_another_home_finds_what_one_machine_wrote(cli, model, tmp_path, rdb):
    assert cli("ask", "-s", "laptop", "where is the zanzibar config").exit_code == 0
    other = tmp_path / "phone-home"
    other.mkdir()
    result = cli.run("search", "ZANZIBAR", "--json", env={"CHATCLI_HOME": str(other)})
    assert result.returncode == 0, result.stderr
    assert [(h["session"], h["message"]) for h in json.loads(result.stdout)["hits"]] == [("laptop", 2), ("laptop", 1)]


@pytest.mark.any_redis
def test_long_sessions_are_read_in_slices_without_missing_or_repeating(cli, model, rdb, monkeypatch):
    from chatcli import search

    monkeypatch.setattr(search, "SLICE_ELEMENTS", 7)
    monkeypatch.setattr(search, "LUA_CHUNK", 5)
    monkeypatch.setattr(search, "SLICE_BYTES", 300)
    monkeypatch.setattr(search, "ROUND_BYTES", 10**6)  # both sessions in the first round
    monkeypatch.setattr(search, "ROUND_BYTES_HERE", 10**6)
    rdb.rpush("message_store:long", *[lc("human", f"line {i} {'needle' if i % 5 == 0 else 'hay'}") for i in range(60)])
    rdb.rpush("message_store:short", lc("human", "a needle too"))  # older: read beside the long one's first slice
    rdb.zadd(INDEX, {"long": time.time(), "short": time.time() - 60})
    for side in ["here", "redis"]:
        doc = search_json(cli, "needle", "--filter", side, "--limit", "0")
        # rpush: element 0 is the newest, "line 0", message number 60; the older session's hit comes after all
        assert [(h["session"], h["message"]) for h in doc["hits"]] == [
            *(("long", 60 - i) for i in range(0, 60, 5)),
            ("short", 1),
        ], side
        assert doc["stats"]["round_trips"] > 3 and doc["stats"]["messages"] == 61
        stored = rdb.lrange("message_store:long", 0, -1) + rdb.lrange("message_store:short", 0, -1)
        moved = sum(map(len, stored)) if side == "here" else sum(len(x) for x in stored if b"needle" in x)
        assert doc["stats"]["bytes_received"] == moved  # what came over the wire: every element, or the hits


def test_a_turn_pushed_between_a_long_sessions_first_slice_and_its_length_shifts_nothing(rdb, monkeypatch):
    """Filtering here, a full first slice is numbered by the list's length, asked the next round trip: a message
    pushed in between is seen (the first slice is read again), and no message is found twice or misnumbered."""
    from chatcli import search as search_module
    from chatcli.store import SessionStore

    monkeypatch.setattr(search_module, "SLICE_ELEMENTS", 4)
    for sid, score in (("long", 1000.0), ("longer", 900.0)):
        rdb.rpush(f"message_store:{sid}", *[lc("human", f"needle {i}") for i in range(10, 0, -1)])  # 1: oldest
        rdb.zadd(INDEX, {sid: score})
    search = Search(SessionStore(rdb), parse_query("needle"), side="here")
    first_round = search._round_here

    def round_then_push(batch):
        reads = first_round(batch)
        turn = search.stats.round_trips + 11
        if turn <= 13:  # other machines' turns after each of the first three round trips
            for sid in ("long", "longer"):
                rdb.lpush(f"message_store:{sid}", lc("human", f"needle {turn}"))
        return reads

    search._round_here = round_then_push  # type: ignore[method-assign]
    hits = [(h.session, h.position, h.snippet.text) for h in search.hits()]
    # the third round trip read the first slices again with the lists' length: 12 messages then, numbered right;
    # what came later (13) is newer than the search
    assert hits == [(sid, n, f"needle {n}") for sid in ("long", "longer") for n in range(12, 0, -1)]


def test_a_progress_line_goes_to_stderr_while_a_search_runs(cli, sessions):
    from chatcli.store import SessionStore

    store = SessionStore(sessions)
    err = io.StringIO()
    show(Search(store, parse_query("quick")), 0, Console(file=io.StringIO()), Console(file=err), progress_after=0)
    assert "searching… " in err.getvalue() and "of 3 sessions" in err.getvalue()
    quiet = io.StringIO()
    show(Search(store, parse_query("quick")), 0, Console(file=io.StringIO()), Console(file=quiet))
    assert "searching" not in quiet.getvalue()


def test_slash_search_in_the_repl(cli, sessions, home):
    from chatcli.cli import open_store
    from chatcli.repl import ChatRepl
    from chatcli.settings import load_settings

    settings = load_settings()
    store = open_store(settings, spool=True)
    out, err = io.StringIO(), io.StringIO()
    repl = ChatRepl(settings, store, None, "new", Console(file=out), Console(file=err))
    repl.commands["search"].run("lazy")
    assert [line.split("\t")[0:4:3] for line in out.getvalue().splitlines()] == [["mid", "2"], ["mid", "1"]]
    assert "chatcli chat -s mid" in err.getvalue()
    with pytest.raises(UsageError, match="usage: /search"):
        repl.commands["search"].run("")


def test_a_search_stopped_early_leaves_no_reader_behind(rdb, monkeypatch):
    import threading

    from chatcli import search as search_module
    from chatcli.store import SessionStore

    monkeypatch.setattr(search_module, "ROUND_BYTES", 1)  # a session a round trip: many rounds wait to be read
    monkeypatch.setattr(search_module, "ROUND_BYTES_HERE", 1)
    for i in range(30):
        rdb.rpush(f"message_store:s{i}", lc("human", f"needle {i}"))
        rdb.zadd(INDEX, {f"s{i}": i})
    search = Search(SessionStore(rdb), parse_query("needle"))
    hits = search.hits()
    assert next(hits).session == "s29"  # the newest
    deadline = time.monotonic() + 30
    while search.stats.round_trips < 2 + search_module.AHEAD and time.monotonic() < deadline:
        time.sleep(0.01)  # until the reader holds a round the full queue has no room for
    hits.close()  # as --limit or Ctrl-C stop it
    for thread in [t for t in threading.enumerate() if t.name == "chatcli-search-read"]:
        thread.join(10)
        assert not thread.is_alive()
    assert search.stats.round_trips <= 3 + search_module.AHEAD  # it stopped reading: not the other 25 sessions


@pytest.mark.any_redis
def test_a_node_that_lost_the_script_gets_it_again(rdb):
    from chatcli.store import SessionStore

    client = rdb
    rdb.rpush("message_store:a", lc("human", "needle here"))
    rdb.zadd(INDEX, {"a": 1.0})
    search = Search(SessionStore(client), parse_query("needle"), side="redis")
    search._sha = client.script_load(FILTER_SLICE)
    client.script_flush()  # as a restarted node, or one that joined the cluster since
    assert [(h.session, h.position) for h in search.hits()] == [("a", 1)]


def test_a_session_written_to_during_a_search_is_still_searched_once(rdb, monkeypatch):
    from chatcli import search as search_module
    from chatcli.store import SessionStore

    monkeypatch.setattr(search_module, "ROUND_BYTES", 1)  # a session a round trip
    monkeypatch.setattr(search_module, "ROUND_BYTES_HERE", 1)
    monkeypatch.setattr(search_module, "AHEAD", 1)
    monkeypatch.setattr(search_module, "PAGE", 2)  # the index is read as the search goes
    for i in range(20):
        rdb.rpush(f"message_store:s{i}", lc("human", f"needle {i}"))
        rdb.zadd(INDEX, {f"s{i}": 1000.0 + i})
    hits = Search(SessionStore(rdb), parse_query("needle")).hits()
    found = [next(hits).session]
    assert found == ["s19"]
    # another machine writes to the oldest session (not searched yet) and to the newest (searched): both move
    # to the top of the index, above where the search started
    for sid in ["s0", "s19"]:
        rdb.lpush(f"message_store:{sid}", lc("human", f"needle again in {sid}"))
        rdb.zadd(INDEX, {sid: 5000.0})
    found += [h.session for h in hits]
    assert sorted(found) == sorted([*(f"s{i}" for i in range(20)), "s0"])  # s0's two messages, s19 once
    assert found.count("s19") == 1
