"""noded's VNC handshake (herd.node.rfb) against real QEMU started by Herd's Kvm hypervisor
with Ganeti's VNC security parameters: vnc_password_file (QEMU's password=on, the password set
over QMP), vnc_tls anonymous (tls-creds-anon) and with X.509 certificates and client
verification (tls-creds-x509 verify-peer=on). Each guest is started paused without disks:
QEMU's VNC server answers all the same, and no guest needs to boot.

For each set-up, a viewer speaking plain RFB (security None) reaches ServerInit through
noded's real /vnc/NAME route; a wrong password and a missing client certificate give clear
errors; the password never appears in a log or in the runtime file.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from herd.hypervisor.base import InstanceSpec
from herd.hypervisor.kvm import Kvm
from herd.node import rfb
from herd.paths import HerdPaths
from tests.vnc_x509 import make_vnc_x509_dir

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="qemu-system-x86_64 not installed")]

SECRET = "Vnc-s3cret"  # QEMU and noded use its first 8 characters


class NodeService:
    """What noded's /vnc route needs of its service: the hypervisor."""

    def __init__(self, kvm: Kvm) -> None:
        self.kvm = kvm

    def hypervisor(self) -> Kvm:
        return self.kvm


def start(kvm: Kvm, name: str, **hv: Any) -> None:
    spec = InstanceSpec(name=name, uuid=str(uuid.uuid4()), memory=64, vcpus=1,
                        hvparams={"kvm_flag": "disabled", "vnc_bind_address": "127.0.0.1",
                                  **hv})
    asyncio.run(kvm.start(spec, paused=True))


def server_init_via_noded(kvm: Kvm, name: str) -> tuple[int, int, str]:
    """A viewer offering only what noVNC does for security None, through noded's route:
    (width, height, desktop name) from the ServerInit QEMU sent."""
    from starlette.testclient import TestClient

    from herd.rpc.server import build_app

    app = build_app(NodeService(kvm))  # type: ignore[arg-type]
    with TestClient(app) as http, http.websocket_connect(f"/vnc/{name}") as ws:
        assert ws.receive_bytes() == rfb.VERSION_38
        ws.send_bytes(rfb.VERSION_38)
        offer = ws.receive_bytes()
        assert offer == b"\1\1", offer  # failure reasons would be in here
        ws.send_bytes(b"\1")
        assert ws.receive_bytes() == b"\0\0\0\0"
        ws.send_bytes(b"\1")  # ClientInit (shared)
        got = b""
        while len(got) < 24 or len(got) < 24 + struct.unpack(">I", got[20:24])[0]:
            got += ws.receive_bytes()
        width, height = struct.unpack(">HH", got[:4])
        name_len = struct.unpack(">I", got[20:24])[0]
        ws.close()
        return width, height, got[24:24 + name_len].decode()


def direct_error(kvm: Kvm, name: str) -> str:
    """The RfbError noded's handshake gives for this guest."""
    async def body() -> str:
        endpoint = await kvm.vnc_endpoint(name)
        assert endpoint is not None
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        try:
            await rfb.authenticate(reader, writer, endpoint)
        except rfb.RfbError as exc:
            return exc.message
        finally:
            writer.close()
        raise AssertionError("the handshake succeeded")
    return asyncio.run(body())


def test_secured_vnc_of_real_qemu(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    paths = HerdPaths(tmp_path / "root")
    paths.ensure()
    kvm = Kvm(paths)
    password = tmp_path / "vnc.pw"
    password.write_text(SECRET + "\n")
    password.chmod(0o600)
    certs = make_vnc_x509_dir(tmp_path / "x509")
    no_client = make_vnc_x509_dir(tmp_path / "x509-server-only", client=False)
    setups = {
        "pw1": {"vnc_password_file": str(password)},
        "anon1": {"vnc_tls": True, "vnc_password_file": str(password)},
        "anon2": {"vnc_tls": True},
        "x509a": {"vnc_tls": True, "vnc_x509_path": str(certs), "vnc_x509_verify": True,
                  "vnc_password_file": str(password)},
        "x509b": {"vnc_tls": True, "vnc_x509_path": str(no_client), "vnc_x509_verify": True},
    }
    try:
        for name, hv in setups.items():
            start(kvm, name, **hv)
        for runtime in paths.instance_run_dir.rglob("*"):  # argv, runtime spec: no password
            if runtime.is_file():
                assert SECRET[:8].encode() not in runtime.read_bytes(), runtime
        for name in ("pw1", "anon1", "anon2", "x509a"):
            width, height, desktop = server_init_via_noded(kvm, name)
            print(f"{name}: ServerInit {width}x{height} {desktop!r}")
            assert width >= 320 and height >= 200 and name in desktop

        hint = direct_error(kvm, "x509b")
        assert "with vnc_x509_verify QEMU wants a client certificate" in hint, hint
        assert f"{no_client}/client-cert.pem" in hint

        password.write_text("changed!\n")  # QEMU keeps the password it was started with
        wrong = direct_error(kvm, "pw1")
        assert wrong == (f"the VNC server refused the password from vnc_password_file "
                         f"{password}: Authentication failed"), wrong
        assert "refused the password" in direct_error(kvm, "x509a")
    finally:
        for name in setups:
            asyncio.run(kvm.stop(name, 0))
    assert SECRET[:8] not in caplog.text
