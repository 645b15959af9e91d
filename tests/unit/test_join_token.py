"""Join tokens: they expire, a proven attempt spends them (whatever happens next), wrong tries
spend them after a few; the node's join app enforces it. The CLI keeps them off the command
line when asked."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from starlette.testclient import TestClient

from herd.cli.gnt_node import join_token
from herd.cli.join_token import parse_ttl
from herd.errors import ParameterError
from herd.paths import HerdPaths
from herd.rpc import certs, join


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HerdPaths:
    """A node waiting to join (its join certificate and token made)."""
    monkeypatch.setattr(join, "_reexec", lambda: None)  # a successful join restarts noded
    p = HerdPaths(tmp_path)
    join.issue_join_token(p)
    return p


def token_file(p: HerdPaths) -> Path:
    return p.data_dir / "join-token"


# -- the pure decisions -------------------------------------------------------------------------
def test_token_problem() -> None:
    token = join.JoinToken("a" * 32, "b" * 32, expires=1000.0)
    assert join.token_problem(token, 999.0) is None
    expired = join.token_problem(token, 1000.0)
    assert expired is not None and "expired at 1970-01-01 00:16:40 UTC" in expired
    missing = join.token_problem(None, 0.0)
    assert missing is not None and "herd-join-token" in missing


def test_wrong_proofs_spend_the_token_on_the_third() -> None:
    token = join.JoinToken("a" * 32, "b" * 32, expires=1000.0)
    once = join.after_wrong_proof(token)
    assert once is not None and once.wrong == 1
    twice = join.after_wrong_proof(once)
    assert twice is not None and twice.wrong == 2
    assert join.after_wrong_proof(twice) is None
    assert join.MAX_WRONG_PROOFS == 3


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("2h", 7200), ("90", 90),
                                               ("7d", 604800)])
def test_ttl_spec(text: str, seconds: int) -> None:
    assert join.check_ttl(parse_ttl(text)) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "1x", "", "8d"])
def test_bad_ttl_is_one_line(text: str) -> None:
    with pytest.raises(ParameterError) as err:
        join.check_ttl(parse_ttl(text))
    assert "\n" not in err.value.message


# -- issuing ------------------------------------------------------------------------------------
def test_token_is_kept_until_it_expires_or_a_ttl_asks_for_a_new_one(node: HerdPaths) -> None:
    first = join.issue_join_token(node)
    assert 3590 < first.expires - time.time() <= 3600
    assert token_file(node).stat().st_mode & 0o777 == 0o600
    assert join.issue_join_token(node) == first
    longer = join.issue_join_token(node, ttl=7200)
    assert longer.secret != first.secret and longer.pin == first.pin
    assert 7190 < longer.expires - time.time() <= 7200
    data = json.loads(token_file(node).read_text())
    token_file(node).write_text(json.dumps({**data, "expires": time.time() - 1}))
    renewed = join.issue_join_token(node)
    assert renewed.secret not in (first.secret, longer.secret)
    assert join.ensure_join_material(node) == renewed.text


def test_a_token_written_by_an_older_version_expires_an_hour_after_it_was_written(
        node: HerdPaths) -> None:
    path = token_file(node)
    path.write_text("ab" * 16 + ":" + "cd" * 16 + "\n")
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    old = join.read_token(path)
    assert old is not None and join.token_problem(old, time.time()) is not None
    assert join.issue_join_token(node).secret != "ab" * 16


# -- the node's join app ------------------------------------------------------------------------
class Master:
    """What gnt-node add does against the node's join app (herd.rpc.join.join_node), in
    process: ask for the CSR, certify the key with a real CA, prove the token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.ca_cert, self.ca_key = certs.create_ca("cluster.example.com")

    def csr(self) -> Any:
        return self.client.post("/join/csr", json={})

    def complete(self, secret: str, cert: bytes | None = None) -> Any:
        if cert is None:
            answer = self.csr()
            if answer.status_code != 200:  # join_node stops there too
                return answer
            csr = x509.load_pem_x509_csr(answer.json()["result"]["csr"].encode())
            cert = certs.sign_public_key(self.ca_cert, self.ca_key, csr.public_key(),
                                       "node2.example.com", ["node2.example.com"],
                                       ["192.0.2.2"])
        payload = {"node_name": "node2.example.com", "ca_cert": self.ca_cert.decode(),
                   "node_cert": cert.decode(), "facts": {"cluster_name": "c"},
                   "proof": join.proof(secret, "node2.example.com", self.ca_cert.decode(),
                                       cert.decode())}
        return self.client.post("/join/complete", json=payload)


@pytest.fixture
def master(node: HerdPaths) -> Master:
    return Master(TestClient(join.build_join_app(node)))


def message(answer: Any) -> str:
    return str(answer.json()["error"]["message"])


def test_wrong_tries_are_counted_then_the_token_is_spent(node: HerdPaths,
                                                         master: Master) -> None:
    right = join.read_token(token_file(node))
    assert right is not None
    wrong = "f" * 32 if right.secret != "f" * 32 else "e" * 32
    for count in (1, 2):
        answer = master.complete(wrong)
        assert answer.status_code == 403
        assert f"wrong join token ({count} of 3" in message(answer)
    answer = master.complete(wrong)
    assert answer.status_code == 403 and "the token is spent" in message(answer)
    assert not token_file(node).exists()
    answer = master.complete(right.secret)  # the right one no longer works either
    assert answer.status_code == 403 and "no join token" in message(answer)
    assert not node.node_cert.exists()


def test_an_expired_token_is_refused_before_anything_is_signed(node: HerdPaths,
                                                                master: Master) -> None:
    token = join.issue_join_token(node, ttl=1)
    data = json.loads(token_file(node).read_text())
    token_file(node).write_text(json.dumps({**data, "expires": time.time() - 1}))
    answer = master.csr()
    assert answer.status_code == 403 and "expired at" in message(answer)
    cert, _key = certs.create_self_signed("x")
    answer = master.complete(token.secret, cert=cert)
    assert answer.status_code == 403 and "expired at" in message(answer)
    assert not token_file(node).exists() and not node.node_cert.exists()


def test_a_proven_attempt_spends_the_token_even_when_the_join_then_fails(
        node: HerdPaths, master: Master) -> None:
    token = join.read_token(token_file(node))
    assert token is not None
    other, _key = certs.create_self_signed("not-this-node")  # a certificate for another key
    answer = master.complete(token.secret, cert=other)
    assert answer.status_code == 400
    assert "not for this node's key" in message(answer) and "spent" in message(answer)
    assert not token_file(node).exists() and not node.node_cert.exists()
    assert master.complete(token.secret).status_code == 403


def test_a_right_token_joins_once(node: HerdPaths, master: Master) -> None:
    token = join.read_token(token_file(node))
    assert token is not None
    answer = master.complete(token.secret)
    assert answer.status_code == 200, answer.text
    assert node.node_cert.exists() and not token_file(node).exists()


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_token_sources() -> None:
    token = "ab" * 16 + ":" + "cd" * 16
    assert join_token(token, {}, io.StringIO()) == token
    assert join_token(None, {"HERD_JOIN_TOKEN": token}, io.StringIO()) == token
    assert join_token("-", {"HERD_JOIN_TOKEN": "other"}, io.StringIO(token + "\n")) == token
    assert join_token(None, {}, io.StringIO()) is None
