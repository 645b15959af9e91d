"""masterd imports only the logic module of the operation a job runs (herd.logic.lu_index)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from herd.logic import base
from herd.logic.lu_index import LOGIC_MODULES, LU_MODULES


def test_lu_index_names_the_module_of_every_logical_unit() -> None:
    for name in LOGIC_MODULES:
        importlib.import_module(f"herd.logic.{name}")
    registered = {op_id: cls.__module__ for op_id, cls in base._LU_REGISTRY.items()}
    lines = "".join(f'    "{k}": "{v}",\n' for k, v in sorted(registered.items()))
    assert registered == LU_MODULES, f"herd/logic/lu_index.py's LU_MODULES should read:\n{lines}"


def test_every_logic_module_with_units_is_listed() -> None:
    """A new logic module defining units must be in LOGIC_MODULES (lu_for's fallback)."""
    assert {m.removeprefix("herd.logic.") for m in LU_MODULES.values()} <= set(LOGIC_MODULES)


def test_a_trivial_job_loads_one_logic_module() -> None:
    """The unit of OP_TEST_DELAY comes without the node, crypto or allocator code (and the
    cryptography, Starlette and statistics modules they import: ~15 MiB in masterd)."""
    code = ("import sys\n"
            "import herd.jobs.executor\n"
            "from herd.logic.base import lu_for\n"
            "from herd.opcodes import opcode_from_dict\n"
            "op = opcode_from_dict({'OP_ID': 'OP_TEST_DELAY', 'duration': 0})\n"
            "print(lu_for(op).__name__)\n"
            "print(' '.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "LUTestDelay"
    modules = set(out[1].split())
    assert [m for m in ("herd.logic.node", "herd.logic.crypto", "herd.logic.cluster",
                        "cryptography", "starlette", "statistics") if m in modules] == []


def test_an_operation_herd_lacks_still_gets_its_refusal() -> None:
    from herd.logic.unsupported import LUUnsupported
    from herd.opcodes.instance_extra import UNBACKED

    unbacked = sorted(op for op in UNBACKED if op not in LU_MODULES
                      or LU_MODULES[op] == "herd.logic.unsupported")
    assert unbacked, "no operation left unsupported? then drop this test"
    op = type("Op", (), {"OP_ID": unbacked[0]})()
    assert base.lu_for(op) is LUUnsupported  # type: ignore[arg-type]
