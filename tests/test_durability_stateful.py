"""A rule-based state machine drives two chatcli clients (two stores on one spool file and one real Redis)
through turns, command starts (spool flushes), reads and /undo, with faults injected at the Redis seam (a
connection lost before Redis ran a call, or after it ran it: a timed-out EXEC that still applied; Ctrl-C
before or after) and at the disk seam (the spool cannot be written). After every step: no turn is stored
twice, a question and its answer are adjacent, no turn the user was told is kept is lost, no undone turn
comes back. At the end, with the faults gone, every kept turn is in Redis once, in the order it was made."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from chatcli.errors import ChatcliError
from chatcli.spool import Spool, SpoolError
from tests.durable import FaultyStore, exchange_record, layered, stored

FAULTS = [None, None, "before", "after", "interrupt-before", "interrupt-after"]
_turn_ids = itertools.count()


class FullDiskSpool(Spool):
    """A real Spool on a disk that is full while `full` is set: adding fails as SQLite fails then."""

    full = False

    def add(self, target: str, prefix: str, record) -> int:
        if self.full:
            raise SpoolError(f"cannot write the spool {self.path}: database or disk is full")
        return super().add(target, prefix, record)


class TwoClients(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="chatcli-sm-"))
        self.prefix = f"sm{uuid.uuid4().hex[:8]}:"
        self.clients = []
        for _ in range(2):
            spool = FullDiskSpool(self.home)
            layer, store, _said = layered(self.url, self.home, self.prefix, store_class=FaultyStore, spool=spool)
            self.clients.append((layer, store, spool))
        self.admin = self.clients[0][1].client
        self.kept: dict[str, list[str]] = {"a": [], "b": []}  # turns the user was told are kept, in order
        self.unsure: set[str] = set()  # turns whose save failed: stored at most once
        self.undone: set[str] = set()
        self.mine: dict[tuple[int, str], list[str]] = {}  # (client, session) -> its turns, for /undo

    def teardown(self) -> None:
        try:
            for _layer, store, spool in self.clients:
                store.fault, spool.full = None, False
            self.clients[0][0].flush()  # the next command, with Redis and the disk well again
            assert self.clients[0][2].rows() == []
            for session, turns in self.kept.items():
                stored_ids = self.turns_in_redis(session)
                assert [t for t in stored_ids if t not in self.unsure] == turns  # each once, in order
        finally:
            for layer, _store, spool in self.clients:
                spool.close()
                layer.store.client.close()
            shutil.rmtree(self.home, ignore_errors=True)

    def turns_in_redis(self, session: str) -> list[str]:
        messages = stored(self.admin, session, self.prefix)
        ids = [m["data"]["id"] for m in messages]
        for i in range(0, len(ids), 2):  # pairs: a question then its answer, same turn
            assert ids[i].endswith("-0") and ids[i + 1] == ids[i][:-2] + "-1", ids
        return [ids[i][:-2] for i in range(0, len(ids), 2)]

    @rule(client=st.integers(0, 1), session=st.sampled_from("ab"), fault=st.sampled_from(FAULTS), full=st.booleans())
    def turn(self, client: int, session: str, fault: str | None, full: bool) -> None:
        layer, store, spool = self.clients[client]
        turn = f"t{next(_turn_ids)}"
        store.fault, spool.full = fault, full and fault is not None  # a full disk alone is not a fault
        try:
            layer.save_turn(exchange_record(session, turn))
        except KeyboardInterrupt:
            if spool.full:  # neither the spool nor Redis took it (chatcli holds signals while it saves)
                self.unsure.add(turn)
                return
            # else the spool had it before Ctrl-C: kept all the same
        except SpoolError:
            self.unsure.add(turn)  # the user was told this turn is not kept
            return
        finally:
            store.fault, spool.full = None, False
        self.kept[session].append(turn)
        self.mine.setdefault((client, session), []).append(turn)

    @rule(client=st.integers(0, 1), fault=st.sampled_from(FAULTS))
    def command_starts(self, client: int, fault: str | None) -> None:
        layer, store, _spool = self.clients[client]
        store.fault = fault
        try:
            layer.flush()
        except (KeyboardInterrupt, ChatcliError):
            pass
        finally:
            store.fault = None

    @rule(client=st.integers(0, 1), session=st.sampled_from("ab"), fault=st.sampled_from(FAULTS))
    def read_window(self, client: int, session: str, fault: str | None) -> None:
        layer, store, _spool = self.clients[client]
        store.fault = fault
        try:
            window = layer.window(session, 50)
        except KeyboardInterrupt:
            return
        finally:
            store.fault = None
        ids = [m["data"]["id"] for m in window.messages]
        assert len(ids) == len(set(ids))  # what the model would see has no turn twice

    @rule(client=st.integers(0, 1), session=st.sampled_from("ab"))
    def undo(self, client: int, session: str) -> None:
        layer, _store, _spool = self.clients[client]
        own = self.mine.get((client, session))
        if not own:
            return
        try:
            removed = layer.remove_turn(session, own[-1])
        except ChatcliError:
            return
        if removed is not None:
            turn = own.pop()
            self.kept[session].remove(turn)
            self.undone.add(turn)

    @invariant()
    def nothing_twice_nothing_lost_nothing_undone_comes_back(self) -> None:
        pending = {r.turn for r in self.clients[0][2].rows() if r.state == "pending"}
        for session, turns in self.kept.items():
            stored_ids = self.turns_in_redis(session)
            assert len(stored_ids) == len(set(stored_ids)), stored_ids
            assert not self.undone & (set(stored_ids) | pending)
            assert [t for t in turns if t not in stored_ids and t not in pending] == []


def test_two_clients_with_faults_never_lose_or_double_a_turn(redis_proc):
    TwoClients.url = redis_proc.url
    run_state_machine_as_test(
        TwoClients,
        settings=settings(
            max_examples=int(os.environ.get("CHATCLI_STATEFUL_EXAMPLES", "40")),
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
