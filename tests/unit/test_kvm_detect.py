"""KVM detection: cached per host boot, and kvm_flag's choice between KVM and TCG."""

from __future__ import annotations

import asyncio

import pytest

from herd.errors import HypervisorError
from herd.hypervisor.kvm import Kvm, detect
from herd.paths import HerdPaths


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def fake_probe(binary: str = "", timeout: float = 0) -> tuple[bool, str]:
        calls.append(1)
        return False, "/dev/kvm probe timed out after 2 s"

    monkeypatch.setattr(detect, "run_probe", fake_probe)
    monkeypatch.setattr(detect, "qemu_version", lambda binary="": "7.2.0")
    return calls


def test_probe_runs_once_and_is_cached_in_run_dir(tmp_path, probes: list[int]) -> None:
    paths = HerdPaths(tmp_path)
    facts = Kvm(paths).node_facts()
    assert facts == {"hypervisor": "kvm", "accel": "tcg", "kvm_usable": False,
                     "kvm_reason": "/dev/kvm probe timed out after 2 s", "qemu_version": "7.2.0"}
    assert (paths.run_dir / "kvm-probe.json").exists()
    Kvm(paths).node_facts()  # a restarted daemon reads the file
    assert len(probes) == 1
    detect.detect(paths, force=True)
    assert len(probes) == 2


def test_kvm_flag_choice(tmp_path, probes: list[int]) -> None:
    kvm = Kvm(HerdPaths(tmp_path))
    assert asyncio.run(kvm._choose_accel("")) == "tcg"
    assert asyncio.run(kvm._choose_accel("disabled")) == "tcg"
    with pytest.raises(HypervisorError, match="kvm_flag=enabled but KVM is not usable"):
        asyncio.run(kvm._choose_accel("enabled"))


def test_boot_sector_is_bootable() -> None:
    sector = detect._boot_sector()
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"


def test_concurrent_first_looks_probe_once_and_all_get_the_answer(
        tmp_path, probes: list[int]) -> None:
    """Two node_info calls of a fresh noded probed at once and shared a temporary file name;
    the second rename failed the job (CI's RAPI load run). Now one probes, the others wait."""
    import concurrent.futures
    import time as _time

    paths = HerdPaths(tmp_path)
    real = detect.run_probe

    def slow_probe(binary: str = "", timeout: float = 0) -> tuple[bool, str]:
        _time.sleep(0.2)  # long enough for every thread to arrive while it runs
        return real(binary, timeout)

    detect.run_probe = slow_probe  # type: ignore[assignment]
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: detect.detect(paths), range(8)))
    finally:
        detect.run_probe = real  # type: ignore[assignment]
    assert len(probes) == 1 and {r.kvm_reason for r in results} == {
        "/dev/kvm probe timed out after 2 s"}
    assert [p.name for p in paths.run_dir.iterdir()] == ["kvm-probe.json"]  # no temp left


def test_kvm_needs_the_cpus_virtualisation_extension() -> None:
    """A /dev/kvm without vmx/svm (kvm-pvm on a nested host) runs the probe's boot sector but
    never a Linux guest: such a host is not KVM-usable."""
    assert detect.hardware_virt("processor\t: 0\nflags\t\t: fpu vme vmx sse2\n") == "vmx"
    assert detect.hardware_virt("flags\t\t: fpu svm lm\n") == "svm"
    assert detect.hardware_virt("flags\t\t: fpu vme pni lm hypervisor\n") is None
    assert detect.hardware_virt("flags\t\t: fpu vmxx svm_lock\n") is None
