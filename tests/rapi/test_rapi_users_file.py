"""The RAPI users file holds passwords: Herd creates it 0600, a push of the same content
tightens a loose mode, and each node reports its mode so that verify can warn."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.logic.bootstrap import RAPI_USERS_TEMPLATE, create_rapi_users_file
from herd.node import facts
from herd.node.cluster_files import RAPI_USERS, ClusterFiles
from herd.paths import HerdPaths
from herd.rapi.auth import parse_users


def test_herd_creates_the_users_file_for_root_only(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    assert create_rapi_users_file(p)
    assert p.rapi_users_file.stat().st_mode & 0o777 == 0o600
    assert parse_users(p.rapi_users_file.read_text()) == {}  # comments only: no user yet
    p.rapi_users_file.write_text("admin pw write\n")  # an admin's users are kept
    assert not create_rapi_users_file(p)
    assert p.rapi_users_file.read_text() == "admin pw write\n"
    assert RAPI_USERS_TEMPLATE.startswith("#")


def test_a_push_of_the_same_users_file_tightens_its_mode(tmp_path: Path) -> None:
    p = HerdPaths(tmp_path)
    files = ClusterFiles(p)
    files.write_ssl({RAPI_USERS: "admin pw write\n"}, (RAPI_USERS,))
    assert p.rapi_users_file.stat().st_mode & 0o777 == 0o600
    p.rapi_users_file.chmod(0o644)
    files.write_ssl({RAPI_USERS: "admin pw write\n"}, (RAPI_USERS,))
    assert p.rapi_users_file.stat().st_mode & 0o777 == 0o600


def test_nodes_report_the_mode_and_verify_judges_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_ROOT", str(tmp_path))
    p = HerdPaths(tmp_path)
    assert facts.file_mode(p.rapi_users_file) is None
    create_rapi_users_file(p)
    assert facts.file_mode(p.rapi_users_file) == 0o600
    assert facts.users_file_problem(0o600) is None
    assert facts.users_file_problem(0o400) is None
    assert facts.users_file_problem(None) is None
    assert facts.users_file_problem(0o644) == \
        "mode 0644 lets its group and others read or change the passwords in it"
    assert facts.users_file_problem(0o604) == \
        "mode 0604 lets others read or change the passwords in it"
    assert "its group" in (facts.users_file_problem(0o640) or "")
