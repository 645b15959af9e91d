"""Real QEMU (TCG) guests through Kvm: start, pause, daemon restart, ACPI and hard stop, NICs.

Every test ends its guests with stop(timeout=0) in a finally block, so no QEMU outlives it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from herd.fileutil import pid_alive
from herd.hypervisor.base import InstanceSpec, NicSpec
from herd.hypervisor.kvm import Kvm
from herd.paths import HerdPaths

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="qemu-system-x86_64 not installed")]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
GUEST = REPO / "build/test-guest"
HOST_KERNELS = sorted(glob.glob("/boot/vmlinuz-*"))
HAVE_GUEST = (GUEST / "vmlinuz").exists() and (GUEST / "initrd.img").exists()
#: What the serial log shows once the guest runs: the test guest's marker, or the kernel banner.
BOOT_MARKER = b"HERD_GUEST_READY" if HAVE_GUEST else b"Linux version"


def _guest_params() -> dict[str, object]:
    """The project's test guest if built, else the host kernel (prints to serial, no initrd)."""
    if HAVE_GUEST:
        return {"kernel_path": str(GUEST / "vmlinuz"), "initrd_path": str(GUEST / "initrd.img"),
                "root_path": "", "kernel_args": "quiet", "serial_speed": 115200}
    if not HOST_KERNELS:
        pytest.skip("no test guest and no /boot/vmlinuz-*")
    return {"kernel_path": HOST_KERNELS[-1], "root_path": "", "kernel_args": "panic=-1"}


def _spec(name: str, **hv: object) -> InstanceSpec:
    return InstanceSpec(name=name, uuid=str(uuid.uuid4()), memory=256, vcpus=1,
                        hvparams={"kvm_flag": "disabled", **_guest_params(), **hv})


async def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async test body (the venv has no pytest asyncio plugin)."""
    return asyncio.run(coro)


def test_start_paused_restart_and_hard_stop(tmp_path: Path) -> None:
    async def body() -> None:
        paths = HerdPaths(tmp_path)
        paths.ensure()
        kvm = Kvm(paths)
        spec = _spec("vm1")
        try:
            t0 = time.monotonic()
            info = await kvm.start(spec, paused=True)
            print(f"start(paused) took {time.monotonic() - t0:.3f} s")
            assert info.accel == "tcg" and info.state == "paused" and pid_alive(info.pid)
            listed = await kvm.list_instances()
            assert [(i.name, i.state) for i in listed] == [("vm1", "paused")]
            serial_log = paths.instance_run_dir / "vm1.serial.log"
            await asyncio.sleep(0.5)
            assert not serial_log.exists() or serial_log.stat().st_size == 0
            await kvm.resume("vm1")
            assert (await kvm.instance_info("vm1")).state == "running"
            assert kvm.console_socket("vm1").is_socket()
            assert await _wait_for(lambda: serial_log.exists()
                                   and BOOT_MARKER in serial_log.read_bytes(), 30)

            restarted = Kvm(paths)  # what noded sees after a restart
            again = await restarted.list_instances()
            assert [(i.name, i.pid, i.uuid) for i in again] == [("vm1", info.pid, spec.uuid)]
            assert again[0].spec == spec

            t0 = time.monotonic()
            await restarted.stop("vm1", 0)
            print(f"stop(timeout=0) took {time.monotonic() - t0:.3f} s")
            assert not pid_alive(info.pid)
            assert await restarted.list_instances() == []
            assert not (paths.instance_run_dir / "vm1.runtime.json").exists()
            await restarted.stop("vm1", 0)  # idempotent
        finally:
            await kvm.stop("vm1", 0)
    _run(body())


def test_stale_runtime_file_is_cleaned(tmp_path: Path) -> None:
    async def body() -> None:
        paths = HerdPaths(tmp_path)
        paths.ensure()
        kvm = Kvm(paths)
        info = await kvm.start(_spec("vm2"))
        try:
            os.kill(info.pid, 9)  # our own QEMU, by PID
            assert await _wait_for(lambda: not pid_alive(info.pid), 5)
            assert await kvm.list_instances() == []
            assert not (paths.instance_run_dir / "vm2.runtime.json").exists()
        finally:
            await kvm.stop("vm2", 0)
    _run(body())


@pytest.mark.skipif(not HAVE_GUEST, reason="test guest not built (tools/build-test-guest)")
def test_acpi_stop_with_test_guest(tmp_path: Path) -> None:
    async def body() -> None:
        paths = HerdPaths(tmp_path)
        paths.ensure()
        kvm = Kvm(paths)
        info = await kvm.start(_spec("vm3"))
        log = paths.instance_run_dir / "vm3.serial.log"
        try:
            assert await _wait_for(lambda: log.exists()
                                   and b"HERD_GUEST_READY" in log.read_bytes(), 40), \
                log.read_text(errors="replace")[-2000:] if log.exists() else "no serial log"
            t0 = time.monotonic()
            await kvm.stop("vm3", 30)
            took = time.monotonic() - t0
            print(f"ACPI stop took {took:.3f} s")
            assert not pid_alive(info.pid)
            assert b"HERD_POWEROFF reason=acpi" in log.read_bytes()
            assert took < 30
        finally:
            await kvm.stop("vm3", 0)
    _run(body())


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2 for a network namespace")
def test_bridged_nic_in_netns(tmp_path: Path) -> None:
    """Start a guest with a bridged NIC inside a private netns; its tap goes with stop."""
    ns = f"herdtest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    script = textwrap.dedent(f"""
        import asyncio, uuid
        from pathlib import Path
        from pyroute2 import IPRoute
        from herd.hypervisor.base import InstanceSpec, NicSpec
        from herd.hypervisor.kvm import Kvm
        from herd.network.tap import tap_exists, tap_name
        from herd.paths import HerdPaths
        with IPRoute() as ip:
            ip.link("add", ifname="br-herd", kind="bridge")
            br = ip.link_lookup(ifname="br-herd")[0]
        async def main():
            paths = HerdPaths(Path({str(tmp_path)!r}))
            paths.ensure()
            kvm = Kvm(paths)
            spec = InstanceSpec(name="vmn", uuid=str(uuid.uuid4()), memory=128, vcpus=1,
                                hvparams={{"kvm_flag": "disabled", "serial_console": False,
                                          "boot_order": "network"}},
                                nics=[NicSpec(0, "aa:00:00:00:00:01", "bridged", "br-herd")])
            try:
                await kvm.start(spec, paused=True)
                tap = tap_name(spec.uuid, 0)
                link = await asyncio.to_thread(_link, tap)
                print("TAP", await asyncio.to_thread(tap_exists, tap),
                      link.get("IFLA_MASTER") == br)
            finally:
                await kvm.stop("vmn", 0)
            print("AFTER", await asyncio.to_thread(tap_exists, tap),
                  await kvm.list_instances())
        def _link(name):
            with IPRoute() as ip:
                return ip.get_links(ip.link_lookup(ifname=name)[0])[0]
        asyncio.run(main())
    """)
    try:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "TAP True True" in out.stdout and "AFTER False []" in out.stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_comma_in_cdrom_path_opens_that_file_and_nothing_else(tmp_path: Path) -> None:
    """``cdrom_image_path=/x/e.iso,snapshot=on`` where both files exist: QEMU must open the
    file with the comma in its name (the one noded checked), not ``/x/e.iso`` in snapshot mode."""
    from herd.hypervisor.kvm import qmp

    plain = tmp_path / "e.iso"
    plain.write_bytes(b"P" * 4096)
    evil = tmp_path / "e.iso,snapshot=on"
    evil.write_bytes(b"E" * 8192)

    async def body() -> None:
        paths = HerdPaths(tmp_path / "root")
        paths.ensure()
        kvm = Kvm(paths)
        try:
            await kvm.start(_spec("vmc", cdrom_image_path=str(evil)), paused=True)
            blocks = await qmp.execute(paths.instance_run_dir / "vmc.qmp", "query-block")
            cdroms = [b for b in blocks if b.get("removable") and b.get("inserted")]
            assert len(cdroms) == 1, blocks
            inserted = cdroms[0]["inserted"]
            assert inserted["file"] == str(evil)
            assert inserted["image"]["virtual-size"] == 8192
            assert inserted["image"].get("backing-filename") is None  # no snapshot overlay
        finally:
            await kvm.stop("vmc", 0)
    _run(body())


def test_unknown_nic_mode_rejected(tmp_path: Path) -> None:
    from herd.errors import ParameterError

    kvm = Kvm(HerdPaths(tmp_path))
    spec = _spec("vm4")
    spec.nics = [NicSpec(0, "aa:00:00:00:00:02", "openvswitch", "ovs0")]
    with pytest.raises(ParameterError, match="openvswitch"):
        _run(kvm.start(spec))
    assert _run(kvm.list_instances()) == []
