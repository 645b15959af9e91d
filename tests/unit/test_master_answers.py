"""masterd encodes long answers off its event loop, in pieces (issue 17 item 2): the loop also
runs the jobs and renews the master lease, and at 20,000 instances four clients listing in a
loop held it long enough for masterd to give up the role."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from herd.daemons import masterd
from herd.rpc import master_protocol as proto


@pytest.mark.parametrize("answer", [
    {"ok": True, "result": []},
    {"ok": True, "result": [1]},
    {"ok": True, "result": [{"name": f"i{n}", "tags": ["a", n], "t": 1.5, "x": None}
                            for n in range(proto.PIECE_ROWS * 2 + 1)]},
    {"result": [[1, 2], {"k": "v"}]},
    {"ok": True, "result": [object()]},  # default=str, as encode
])
def test_pieces_decode_to_the_same_answer_on_one_line(answer: dict[str, Any]) -> None:
    line = proto.encode_in_pieces(answer)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(proto.encode(answer))


def test_a_long_answer_is_encoded_on_a_thread_and_a_short_one_inline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = proto.encode_in_pieces

    def spy(answer: dict[str, Any]) -> bytes:
        threads.append(threading.current_thread().name)
        return real(answer)

    monkeypatch.setattr(proto, "encode_in_pieces", spy)
    big = {"ok": True, "result": [{"name": f"i{n}"} for n in range(masterd.BIG_ANSWER_ROWS + 1)]}
    small = {"ok": True, "result": [{"name": "i1"}]}
    assert json.loads(asyncio.run(masterd.encode_answer(big))) == big
    assert json.loads(asyncio.run(masterd.encode_answer(small))) == small
    assert len(threads) == 1 and threads[0] != threading.current_thread().name


def test_a_row_changed_while_encoding_is_encoded_again_on_the_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(answer: dict[str, Any]) -> bytes:
        raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(proto, "encode_in_pieces", changed)
    big = {"ok": True, "result": list(range(masterd.BIG_ANSWER_ROWS + 1))}
    assert json.loads(asyncio.run(masterd.encode_answer(big))) == big
