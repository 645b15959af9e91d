"""Packaging parts that need no package: when systemd starts the daemons, and man pages that
cannot drift from the options."""

from __future__ import annotations

import argparse
from pathlib import Path

from herd.cli.manpage import COMMANDS, man_page, options, parser_of, subcommands
from herd.daemons.util import systemd_unit


def test_systemd_units_are_used_only_on_a_real_node_with_the_package(tmp_path: Path) -> None:
    runtime, units = tmp_path / "run-systemd", tmp_path / "units"
    units.mkdir()
    (units / "herd-masterd.service").write_text("[Service]\n")
    assert systemd_unit(Path("/"), "masterd", runtime, (units,)) is None  # no systemd running
    runtime.mkdir()
    assert systemd_unit(Path("/"), "masterd", runtime, (units,)) == "herd-masterd.service"
    assert systemd_unit(Path("/"), "rapi", runtime, (units,)) is None  # not installed
    assert systemd_unit(tmp_path / "lab-node1", "masterd", runtime, (units,)) is None  # a lab


def test_every_option_of_every_command_is_in_its_man_page() -> None:
    for command in COMMANDS:
        page = man_page(command)
        for name, sub in subcommands(parser_of(command)).items():
            assert f".SS {name.replace('-', chr(92) + '-')}" in page, (command, name)
            for action in options(sub):
                if action.help == argparse.SUPPRESS:
                    continue
                flag = action.option_strings[-1].replace("-", "\\-")
                assert flag in page, (command, name, flag)


def test_test_kinds_follow_where_a_test_lives() -> None:
    from tests.conftest import HERE, kind_of

    assert kind_of(HERE / "unit/test_jobs.py") == "unit"
    assert kind_of(HERE / "rapi/test_rapi_unit.py") == "unit"
    assert kind_of(HERE / "rapi/test_rapi_lab.py") == "lab"
    assert kind_of(HERE / "rapi/test_rapi_fuzz.py") == "lab"
    assert kind_of(HERE / "integration/test_etcd.py") == "integration"
    assert kind_of(HERE / "lab/test_drbd.py") == "lab"
    assert kind_of(HERE / "web/test_web_lab.py") == "lab"
    assert kind_of(HERE / "web/test_web_pages.py") == "unit"


def test_gnt_commands_start_without_the_heavy_modules() -> None:
    """Every gnt-* command imports only what parsing, the master socket and printing need:
    herd.objects, the logic, asyncio, YAML, the queue's SQLite code and the TLS stack cost a
    command 0.1-0.4 s each before (gnt-instance list --help: 0.31 s -> 0.11 s; labs and
    scripts run thousands of commands). They are imported where a subcommand needs them."""
    import subprocess
    import sys

    heavy = ("herd.objects", "yaml", "herd.logic", "asyncio", "httpx", "herd.jobs.queue",
             "cryptography", "sqlite3", "herd.etcd", "herd.rpc.client", "starlette")
    for command in COMMANDS:
        module = COMMANDS[command]
        if command == "herd-join-token":
            continue  # joins over HTTPS: httpx and cryptography are its work
        out = subprocess.run(
            [sys.executable, "-c", f"import sys, {module}; print(' '.join(sorted(sys.modules)))"],
            capture_output=True, text=True, check=True).stdout.split()
        loaded = [h for h in heavy if h in out]
        assert loaded == [], (command, loaded)


def test_guests_and_storage_daemons_get_their_own_scope_only_on_a_real_systemd_node(
        tmp_path: Path) -> None:
    from herd.daemonize import scope_argv, scope_unit

    runtime = tmp_path / "run-systemd"
    assert scope_argv(Path("/"), "x.scope", runtime, "/usr/bin/systemd-run") == []  # no systemd
    runtime.mkdir()
    assert scope_argv(Path("/"), "herd-guest-w1.scope", runtime, "/usr/bin/systemd-run") == [
        "/usr/bin/systemd-run", "--scope", "--quiet", "--collect",
        "--unit=herd-guest-w1.scope", "--"]
    assert scope_argv(tmp_path / "lab-node1", "x.scope", runtime, "/bin/true") == []  # a lab
    assert scope_argv(Path("/"), "x.scope", runtime, "") == []  # no systemd-run installed
    assert scope_unit("guest", "web1.example.com") == "herd-guest-web1.example.com.scope"
    assert scope_unit("storage", "a b/c") == "herd-storage-a_b_c.scope"


def test_daemons_at_rest_leave_the_big_modules_unloaded(tmp_path: Path) -> None:
    """RSS at rest (issue 17: all of a one-node cluster's Herd processes within 100 MiB):
    noded of a cluster loads ``cryptography`` (about 9 MiB) only to join one or for a peer
    certificate that is not a node's; herd-rapi builds the web manager (Jinja2, about 5 MiB)
    at its first /ui request and the opcodes at its first write; masterd serves no HTTP and
    builds no certificates, and after a trivial job it holds the logic of that operation only
    (herd.logic.lu_index); noded keeps no config objects (herd.objects)."""
    import subprocess
    import sys

    # both HTTPS daemons build uvicorn's server as they do at start (without its CLI: click
    # and the multiprocessing supervisors, about 2 MiB each; see herd.daemons)
    serve = ("from herd.daemons import uvicorn_package\nuvicorn = uvicorn_package()\n"
             "import herd.rpc.server\nherd.rpc.server.node_only_protocol(HerdPaths(Path('/')))\n"
             "uvicorn.Server(uvicorn.Config(app=None, lifespan='off', http='h11'))\n")
    rest = {  # module -> what its start builds, and what must stay unloaded
        "herd.daemons.noded": ("from pathlib import Path\nfrom herd.paths import HerdPaths\n"
                               + serve,
                               ("cryptography", "herd.rpc.join", "jinja2", "yaml", "click",
                                "multiprocessing", "uvicorn.main", "herd.objects")),
        "herd.daemons.rapi": (f"from herd.rapi.app import RapiApp\n"
                              f"from pathlib import Path\nfrom herd.paths import HerdPaths\n"
                              f"RapiApp(HerdPaths(Path({str(tmp_path)!r})))\n" + serve,
                              ("cryptography", "jinja2", "herd.web.app", "yaml", "click",
                               "multiprocessing", "uvicorn.main", "herd.opcodes")),
        "herd.daemons.masterd": (
            "from herd.logic.base import lu_for\nfrom herd.opcodes import opcode_from_dict\n"
            "lu_for(opcode_from_dict({'OP_ID': 'OP_TEST_DELAY', 'duration': 0}))\n",
            ("cryptography", "jinja2", "starlette", "uvicorn", "yaml", "statistics")),
    }
    for module, (start, heavy) in rest.items():
        code = f"import sys, {module}\n{start}\nprint(' '.join(sorted(sys.modules)))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        assert [h for h in heavy if h in out] == [], module


def test_a_node_peer_is_told_from_the_decoded_certificate() -> None:
    from herd.rpc.tls import ROLE_NODE, ROLE_RAPI, peer_role

    def subject(*ous: str) -> dict[str, object]:
        return {"subject": ((("commonName", "node1.example.com"),),
                            *((("organizationalUnitName", ou),) for ou in ous))}

    assert peer_role(subject(ROLE_NODE)) == ROLE_NODE
    assert peer_role(subject(ROLE_RAPI)) == ROLE_RAPI
    assert peer_role(subject("sales", ROLE_RAPI, ROLE_NODE)) == ROLE_RAPI  # the first role
    assert peer_role(subject()) is None  # before roles: the full check decides
    assert peer_role({}) is None and peer_role(None) is None


def test_the_websocket_protocol_is_imported_at_the_first_upgrade() -> None:
    """noded and herd-rapi give uvicorn a maker of its websocket protocol (herd.daemons): the
    websockets library (~1.5 MiB) loads when a console connects, not at start, and the
    connection then gets uvicorn's own protocol."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from herd.daemons import lazy_websocket_protocol, uvicorn_package\n"
        "uvicorn = uvicorn_package()\n"
        "async def app(scope, receive, send): pass\n"
        "config = uvicorn.Config(app, lifespan='off', ws=lazy_websocket_protocol('websockets'))\n"
        "config.load()\n"
        "print('websockets' in sys.modules)\n"
        "from uvicorn.server import ServerState\n"
        "async def upgrade():\n"
        "    made = config.ws_protocol_class(config=config, server_state=ServerState(),\n"
        "                                    app_state={})\n"
        "    print(type(made).__module__, type(made).__name__)\n"
        "asyncio.run(upgrade())\n")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0] == "False"
    assert out[1] == "uvicorn.protocols.websockets.websockets_impl WebSocketProtocol"
