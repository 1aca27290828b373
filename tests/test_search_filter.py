import json
import random

import pytest

from chatcli.matching import match_spans, parse_query, searchable_text
from chatcli.search import FILTER_SLICE, keep_indexes

VOC = [
    "Redis",
    "REDIS",
    "k8s",
    "K8S",
    "\u212aelvin",
    "\u0130d",
    "ÄÖÜ",
    "äöü",
    "straße",
    "STRASSE",
    "x/y",
    "a\\b",
    "\\u212A",
    "Ǆ",
    "ǅ",
    "ß",
    "ſ",
    "µ",
    "Σ",
    "ς",
    "ﬁ",
    "\u00ff",
    "\u0178",
    "\u212b",
    "2\u212a",
    "0x1F",
    "İ",
]


def elem(rng):
    content = rng.choice([" ", "\n"]).join(rng.choice(VOC) for _ in range(rng.randint(0, 5)))
    raw = json.dumps({"type": "human", "data": {"content": content}}, ensure_ascii=rng.random() < 0.5)
    if rng.random() < 0.3:
        raw = raw.replace("\\u212a", "\\u212A")
    return raw.encode()


@pytest.mark.parametrize(
    "query", ["redis", "k8s", "kelvin", "i", "id", "strasse", "straße", "äöü", "x", "2k", "0x1f", "s", "fi", "µ"]
)
def test_same(rdb, query):
    rng = random.Random(query)
    items = [elem(rng) for _ in range(400)]
    rdb.delete("message_store:f")
    rdb.rpush("message_store:f", *items)
    parsed = parse_query(query)
    words = parsed.filter_words()
    here = keep_indexes(items, words)
    result = rdb.eval(FILTER_SLICE, 1, "message_store:f", 0, 10**9, 128, *words)
    in_redis = sorted(len(items) - int(n) for n in result[3::2])
    assert in_redis == here
    hits = [i for i, raw in enumerate(items) if match_spans(parsed, searchable_text(json.loads(raw))) is not None]
    assert set(hits) <= set(here)


def test_round_mapping_across_sessions(rdb, monkeypatch):
    import time

    from chatcli import search
    from chatcli.search import Search
    from chatcli.store import SessionStore

    monkeypatch.setattr(search, "SLICE_ELEMENTS", 7)
    rng = random.Random(5)
    truth = {}
    now = time.time()
    for s in range(12):
        sid = f"s{s}"
        n = rng.choice([0, 1, 3, 7, 8, 20, 33])
        items = [
            json.dumps({"type": "human", "data": {"content": rng.choice(["needle", "hay", "NEEDLE x", "k"]) + f" {i}"}})
            for i in range(n)
        ]
        if n:
            rdb.rpush(f"message_store:{sid}", *items)
        rdb.zadd("chatcli:index:{message_store:}", {sid: now - s})
        truth[sid] = [(sid, n - i) for i, it in enumerate(items) if "needle" in it.lower()]
    rdb.set("message_store:wrong", "x")
    rdb.zadd("chatcli:index:{message_store:}", {"wrong": now - 5.5})
    expect = [h for s in range(12) for h in truth[f"s{s}"]]
    for side in ["here", "redis"]:
        got = [
            (h.session, h.position)
            for h in Search(SessionStore(rdb, where="x"), parse_query("needle"), side=side).hits()
        ]
        assert sorted(got) == sorted(expect), side
        assert len(got) == len(set(got))
        for sid in truth:
            assert [h for h in got if h[0] == sid] == truth[sid]
