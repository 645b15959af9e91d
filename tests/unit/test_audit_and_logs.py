"""The job audit (who, from where, what, result) and the daemons' logs (rotation, journald)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import pytest

from herd import errors
from herd.daemons.common import (
    JournalFormatter,
    ReopeningFileHandler,
    reopen_logs,
    stderr_is_journal,
)
from herd.daemons.masterd import origin_for, peer_credentials
from herd.jobs import audit


def test_masterd_stamps_the_origin_and_drops_a_forged_one() -> None:
    forged = ["herd:origin", "via=rapi user=admin", 1]
    ops = [{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "w1",
            "reason": [["gnt:user", "maintenance", 5], forged]},
           {"OP_ID": "OP_TEST_DELAY"}]
    origin = audit.Origin(via="cli", user="alice", uid=1000, pid=42)
    stamped = audit.stamp(ops, origin, now_ns=7)
    assert stamped[0]["reason"] == [["gnt:user", "maintenance", 5],
                                    ["herd:origin", "via=cli user=alice uid=1000 pid=42", 7]]
    assert stamped[1]["reason"] == [["herd:origin", "via=cli user=alice uid=1000 pid=42", 7]]
    assert ops[0]["reason"][1] is forged  # the caller's list is not changed
    assert audit.origin_of(stamped) == "via=cli user=alice uid=1000 pid=42"
    assert audit.origin_of([{"OP_ID": "OP_TEST_DELAY"}]) is None  # a job from before


def test_a_rapi_user_name_can_not_forge_fields_of_the_line() -> None:
    origin = audit.Origin(via="rapi", user="ops uid=0\nvia=cli", address="10.0.0.5:4242")
    assert origin.text() == "via=rapi user=ops_uid=0_via=cli from=10.0.0.5:4242"


def test_only_root_or_masterds_user_submits_for_a_rapi_user() -> None:
    behalf = {"user": "ops", "address": "10.0.0.5:4242"}
    assert origin_for((0, 99), behalf).text() == \
        "via=rapi user=ops uid=0 pid=99 from=10.0.0.5:4242"
    assert origin_for((0, 99), None).text().startswith("via=cli user=root uid=0 pid=99")
    if os.getuid() != 4242:
        with pytest.raises(errors.ParameterError, match="uid 4242 may not submit on behalf"):
            origin_for((4242, 1), behalf)
    with pytest.raises(errors.ParameterError, match="on_behalf"):
        origin_for((0, 1), {"user": 5})
    assert origin_for(None, None).via == "local"


def test_peer_credentials_come_from_the_kernel() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_credentials(a) == (os.getuid(), os.getpid())
    assert peer_credentials(None) is None


def test_audit_line_says_who_what_and_how_it_ended() -> None:
    job = {"id": 42, "status": "error", "summary": ["INSTANCE_STARTUP(w1)"],
           "ops": audit.stamp([{"OP_ID": "OP_INSTANCE_STARTUP"}],
                              audit.Origin(via="rapi", user="ops", address="10.0.0.5:1")),
           "opstatus": ["error"], "start_ts": 10.0, "end_ts": 11.25, "received_ts": 9.0,
           "opresult": [["OpPrereqError", ["instance w1 is offline\nmore"]]]}
    assert audit.audit_line(job) == ("job 42 error INSTANCE_STARTUP(w1) by via=rapi user=ops "
                                     "from=10.0.0.5:1 in 1.25 s: OpPrereqError: instance w1 "
                                     "is offline")
    ok = {**job, "status": "success", "opstatus": ["success"], "opresult": [None]}
    assert audit.audit_line(ok).endswith("in 1.25 s")
    canceled = {**job, "status": "canceled", "start_ts": None, "opstatus": ["canceled"],
                "opresult": [["JobCanceled", ["Job canceled by request"]]], "ops": []}
    assert audit.audit_line(canceled) == ("job 42 canceled INSTANCE_STARTUP(w1) by unknown "
                                          "after 2.25 s: JobCanceled: Job canceled by request")


def _handler(path: Path) -> tuple[logging.Logger, ReopeningFileHandler]:
    logger = logging.getLogger(f"herd.test.rotate.{path.name}")
    logger.propagate = False
    handler = ReopeningFileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


def test_a_rotation_while_threads_write_loses_no_line(tmp_path: Path) -> None:
    path = tmp_path / "masterd.log"
    logger, handler = _handler(path)
    try:
        def write(name: str) -> None:
            for i in range(2000):
                logger.info("%s %d", name, i)

        threads = [threading.Thread(target=write, args=(f"t{k}",)) for k in range(3)]
        for t in threads:
            t.start()
        rotated = []
        for n in range(5):  # what logrotate does: rename, then SIGHUP
            rotated.append(tmp_path / f"masterd.log.{n}")
            os.rename(path, rotated[-1])
            assert reopen_logs() >= 1
        for t in threads:
            t.join()
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = [line for f in [*rotated, path] for line in f.read_text().splitlines()]
    assert len(lines) == 6000 and len(set(lines)) == 6000
    assert path.read_text()  # the new file is written to after the last reopen


def test_journald_stream_is_recognised_only_when_stderr_is_it(tmp_path: Path) -> None:
    with open(tmp_path / "err", "w") as f:
        st = os.fstat(f.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, f.fileno())
        with open(tmp_path / "other", "w") as g:  # inherited variable, redirected stderr
            assert not stderr_is_journal(env, g.fileno())
    assert not stderr_is_journal({}, 2)
    assert not stderr_is_journal({"JOURNAL_STREAM": "x:y"}, 2)
    rec = logging.LogRecord("herd.noded", logging.WARNING, __file__, 1, "disk %s\nlost", ("d0",),
                            None)
    assert JournalFormatter().format(rec) == "<4>herd.noded: disk d0\n  lost"
    rec.levelno = logging.ERROR
    assert JournalFormatter().format(rec).startswith("<3>")


def test_stderr_pointed_at_the_log_follows_the_reopen(tmp_path: Path) -> None:
    """A daemon's launcher sends its stdout/stderr to the log file: after a rotation a crash's
    traceback must land in the new file, not in the renamed one."""
    import subprocess
    import sys

    log_file = tmp_path / "noded.log"
    script = f"""
import logging, os, sys
from herd.daemons.common import ReopeningFileHandler, reopen_logs
h = ReopeningFileHandler({str(log_file)!r})
logging.getLogger().addHandler(h)
os.rename({str(log_file)!r}, {str(log_file)!r} + ".1")
reopen_logs()
print("after the rotation", file=sys.stderr, flush=True)
"""
    with open(log_file, "ab") as out:
        subprocess.run([sys.executable, "-c", script], stdout=out, stderr=out, check=True,
                       cwd=Path(__file__).parents[2])
    assert log_file.read_text() == "after the rotation\n"
    assert "after the rotation" not in (tmp_path / "noded.log.1").read_text()
