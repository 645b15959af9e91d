"""What a gnt-* command loads when it runs (issue 17: a trivial job through the CLI in a few
tens of milliseconds, ``--help`` well under 0.1 s).

A command talks to masterd over a unix socket in line-delimited JSON: it needs argparse, json
and socket, little more. Each module below cost a command milliseconds at start before it was
moved to where a subcommand needs it (``herd.objects`` ~100 ms, PyYAML ~80 ms under load; the
standard library ones a few ms each). These tests run real commands in a subprocess (``--help``,
a job submitted and followed, a list) against a stand-in masterd on a unix socket, and fail
when any of them is loaded: a heavy import added back on the CLI's path shows here, not as a
slow lab.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.paths import HerdPaths

#: Never on the path of --help, a trivial job or a list (third-party and Herd's big parts).
HEAVY = ("herd.objects", "herd.logic", "herd.opcodes", "herd.jobs.queue", "herd.etcd",
         "herd.rpc.client", "herd.config.store", "yaml", "httpx", "cryptography", "starlette",
         "uvicorn", "jinja2", "asyncio", "sqlite3", "ssl")
#: Standard-library modules with a cost of their own that a command does not need:
#: dataclasses brings inspect, ast and dis; tempfile and shutil bring random, bz2 and lzma
#: (argparse imports shutil for the terminal's width); logging brings traceback and threading.
STDLIB_HEAVY = ("dataclasses", "inspect", "ast", "tempfile", "shutil", "random", "subprocess",
                "logging", "email", "http", "uuid", "hashlib", "datetime")
#: The commands of the trivial job and the big list also do without ``typing`` (~2 ms: their
#: modules import it for annotations only, ``TYPE_CHECKING = False`` blocks), the ``socket``
#: wrapper (~3 ms: herd.cli.client speaks through ``_socket``) and ``copy``.
LEAN = {"herd.cli.gnt_debug", "herd.cli.gnt_instance"}
LEAN_TOO = ("typing", "socket", "selectors", "copy")

#: The job a trivial command follows: one log line, then success (masterd's answers' shape).
JOB = {"id": 1, "status": "success", "opstatus": ["success"], "opresult": [None]}
ROWS = [{"name": "web1.example.com", "hypervisor": "kvm", "os": "debian", "status": "running",
         "pnode": "node1.example.com", "oper_ram": 512}]


def answer(method: str, args: dict[str, Any]) -> Any:
    """A stand-in masterd's result for the calls these commands make."""
    if method == "submit_job":
        return 1
    if method == "wait_for_job_change":
        return {"status": "success", "log": [[1, 0, 1700000000.0, "message", "slept 0 s"]]}
    if method == "query_jobs":
        return [JOB]
    if method == "query_instances":
        return [{f: row.get(f) for f in args.get("fields") or row} for row in ROWS]
    raise AssertionError(f"unexpected call {method}")


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Path]:
    """A HERD_ROOT whose master socket answers as masterd does (one thread per connection)."""
    p = HerdPaths(tmp_path)
    p.run_dir.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(p.master_socket))
    server.listen()

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                result = answer(request["method"], request["args"])
                conn.sendall(json.dumps({"ok": True, "result": result}).encode() + b"\n")

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield tmp_path
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(timeout=5)


def run_command(root: Path, module: str, prog: str, *args: str) -> tuple[set[str], str]:
    """Run ``prog args`` (its entry point ``module:main``) in a fresh interpreter; return the
    modules loaded when it exits (not the ``None`` entries that keep a module out, see
    herd.daemons), and its output."""
    listing = root / "modules.txt"
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(listing)!r}, 'w').write("
        "'\\n'.join(sorted(m for m, v in sys.modules.items() if v is not None))))\n"
        f"sys.argv = [{prog!r}, *{list(args)!r}]\n"
        f"from {module} import main\n"
        "sys.exit(main())\n")
    env = dict(os.environ, HERD_ROOT=str(root))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(listing.read_text().split()), proc.stdout


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The ``names`` present in ``modules``, a package counting with any of its submodules."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


COMMANDS: list[tuple[str, str, tuple[str, ...]]] = [
    ("gnt-instance", "herd.cli.gnt_instance", ("list", "--help")),
    ("gnt-instance", "herd.cli.gnt_instance", ("--help",)),
    ("gnt-node", "herd.cli.gnt_node", ("list", "--help")),
    ("gnt-job", "herd.cli.gnt_job", ("list", "--help")),
    ("gnt-debug", "herd.cli.gnt_debug", ("delay", "--help")),
]


@pytest.mark.parametrize(("prog", "module", "args"), COMMANDS,
                         ids=[" ".join((p, *a)) for p, _m, a in COMMANDS])
def test_help_loads_no_heavy_module(tmp_path: Path, prog: str, module: str,
                                    args: tuple[str, ...]) -> None:
    modules, out = run_command(tmp_path, module, prog, *args)
    assert "usage:" in out
    lean = LEAN_TOO if module in LEAN else ()
    assert loaded(modules, HEAVY + STDLIB_HEAVY + lean) == []


def test_gnt_cluster_help_loads_no_heavy_module(tmp_path: Path) -> None:
    """gnt-cluster's parser takes the rebalancer's defaults and the upgrade commands' options
    from their modules (dataclasses, subprocess: a few ms); none of the heavy ones."""
    modules, out = run_command(tmp_path, "herd.cli.gnt_cluster", "gnt-cluster", "--help")
    assert "usage:" in out
    assert loaded(modules, HEAVY) == []


def test_a_trivial_job_loads_no_heavy_module(master: Path) -> None:
    """``gnt-debug delay 0``: submit, follow the job's log, fetch the job (the calls masterd
    answers), printing the log line as Ganeti does."""
    modules, out = run_command(master, "herd.cli.gnt_debug", "gnt-debug", "delay", "0")
    assert out.rstrip().endswith("slept 0 s"), out
    assert loaded(modules, (*HEAVY, *STDLIB_HEAVY, *LEAN_TOO)) == []


def test_a_list_loads_no_heavy_module(master: Path) -> None:
    """``gnt-instance list``: the field registry, one query, a table."""
    modules, out = run_command(master, "herd.cli.gnt_instance", "gnt-instance", "list")
    assert out.splitlines()[1].startswith("web1.example.com"), out
    assert loaded(modules, (*HEAVY, *STDLIB_HEAVY, *LEAN_TOO)) == []


def test_the_stand_in_masterd_is_what_the_cli_expects(master: Path) -> None:
    """The stand-in answers as masterd does: the CLI's own client reads it (a check of the
    fixture, so that the tests above fail only for what they test)."""
    from herd.cli.client import MasterClient

    call: Callable[..., Any]
    with MasterClient(HerdPaths(master), timeout=10) as client:
        call = client.call
        assert call("submit_job", ops=[]) == 1
        assert call("query_jobs", ids=[1]) == [JOB]


def test_library_code_a_command_loads_logs_nothing(tmp_path: Path) -> None:
    """A command that runs library code in-process (gnt-cluster init, dump-config) prints none
    of its log records, though the command itself never imported ``logging``: the first Herd
    module loaded after the start quiets Herd's loggers (herd.cli.common.run_command)."""
    code = ("import sys\n"
            "from herd.cli.common import run_command\n"
            "assert 'logging' not in sys.modules\n"
            "def fn():\n"
            "    from herd.daemons import common\n"
            "    common.logging.getLogger('herd.lib').warning('a daemon would log this')\n"
            "    print('done')\n"
            "sys.exit(run_command('gnt-test', fn))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ, HERD_ROOT=str(tmp_path)))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "done\n", "")
