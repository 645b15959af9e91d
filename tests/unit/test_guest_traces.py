"""herd.hypervisor.base.guests_may_run: noded's usage sampler asks it every minute to decide
whether to load the hypervisors at all, so it must see a guest of each registered hypervisor,
see none on an empty node, and import no hypervisor's code to answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from herd.hypervisor import base
from herd.hypervisor.base import InstanceSpec
from herd.hypervisor.fake import FakeHypervisor
from herd.hypervisor.kvm.runtime import InstanceFiles, list_names
from herd.paths import HerdPaths


def test_every_registered_hypervisor_has_a_trace_check() -> None:
    # a hypervisor added to the registry without one would leave its guests unsampled (the
    # registry's entries carry it, so one cannot be added without)
    assert all(callable(check) for _target, check in base._REGISTRY.values())
    assert base.hypervisor_names()[0] == "kvm"  # the default noded asks first


def test_fake_guest_seen_while_it_exists(tmp_path: Path) -> None:
    paths = HerdPaths(tmp_path)
    assert not base.guests_may_run(paths)  # nothing ever ran here
    hv = FakeHypervisor(paths)

    async def body() -> None:
        await hv.start(InstanceSpec(name="vm", uuid="u", memory=64, vcpus=1, hvparams={}))
        assert base.guests_may_run(paths)
        await hv.stop("vm", 1.0)
        assert await hv.list_instances() == []

    asyncio.run(body())
    assert not base.guests_may_run(paths)  # its file is back to "{}"


def test_kvm_runtime_file_is_the_trace(tmp_path: Path) -> None:
    paths = HerdPaths(tmp_path)
    files = InstanceFiles(paths.instance_run_dir, "vm.example.com")
    paths.instance_run_dir.mkdir(parents=True)
    (paths.instance_run_dir / "vm.example.com.qmp").touch()  # a socket alone: no guest
    assert not base.guests_may_run(paths)
    files.runtime.write_text(json.dumps({}))
    assert base.guests_may_run(paths)
    assert list_names(paths.instance_run_dir) == ["vm.example.com"]  # the same file name


def test_asking_imports_no_hypervisor(tmp_path: Path) -> None:
    code = ("import sys\nfrom pathlib import Path\nfrom herd.hypervisor import base\n"
            "from herd.paths import HerdPaths\n"
            f"base.guests_may_run(HerdPaths(Path({str(tmp_path)!r})))\n"
            "print(sorted(m for m in sys.modules if m.startswith('herd.hypervisor.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['herd.hypervisor.base']", out
