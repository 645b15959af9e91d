"""noded's RFB handshakes (herd.node.rfb) against an in-process fake VNC server over asyncio
streams: security None, VNC Authentication (a known DES vector, a wrong password), an
unsupported type, VeNCrypt with X.509 and anonymous TLS; the viewer side in RFB 3.3/3.7/3.8;
and noded's /vnc/NAME route end to end (a WebSocket viewer, the fake server as the guest)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herd.hypervisor.base import VncEndpoint
from herd.node import rfb
from tests.vnc_x509 import make_vnc_x509_dir

PASSWORD = "hunter22"
SERVER_INIT = struct.pack(">HH", 640, 480) + bytes(16) + struct.pack(">I", 4) + b"fake"


@dataclass
class FakeVnc:
    """A VNC server speaking RFB 3.8 as QEMU does, with one configured security type."""

    types: list[int]
    password: str = PASSWORD
    subtypes: list[int] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    version: bytes = rfb.VERSION_38
    seen: list[Any] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            self.seen.append(exc)
        finally:
            writer.close()
            self.closed.set()

    async def _auth(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        challenge = bytes(range(16))
        writer.write(challenge)
        answer = await reader.readexactly(16)
        ok = answer == rfb.vnc_auth_response(self.password.encode(), challenge)
        writer.write(struct.pack(">I", 0) if ok else
                     struct.pack(">II", 1, 22) + b"Authentication failed\0")
        await writer.drain()
        return ok

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.version)
        self.seen.append(await reader.readexactly(12))
        if not self.types:
            writer.write(b"\0" + struct.pack(">I", 20) + b"Too many connections")
            await writer.drain()
            return
        writer.write(bytes([len(self.types), *self.types]))
        (chosen,) = await reader.readexactly(1)
        self.seen.append(chosen)
        if chosen == rfb.NONE:
            writer.write(struct.pack(">I", 0))
        elif chosen == rfb.VNC_AUTH:
            if not await self._auth(reader, writer):
                return
        elif chosen == rfb.VENCRYPT:
            writer.write(bytes([0, 2]))
            assert await reader.readexactly(2) == bytes([0, 2])
            writer.write(bytes([0, len(self.subtypes)]))
            writer.write(struct.pack(f">{len(self.subtypes)}I", *self.subtypes))
            (sub,) = struct.unpack(">I", await reader.readexactly(4))
            self.seen.append(sub)
            writer.write(b"\1")
            await writer.drain()
            assert self.tls is not None
            await writer.start_tls(self.tls)
            if sub in (rfb.TLS_VNC, rfb.X509_VNC):
                if not await self._auth(reader, writer):
                    return
            else:
                writer.write(struct.pack(">I", 0))
        else:
            return
        await writer.drain()
        self.seen.append(("client-init", await reader.readexactly(1)))
        writer.write(SERVER_INIT)
        await writer.drain()
        while data := await reader.read(4096):  # the rest: echoed (the relay is transparent)
            writer.write(data)
            await writer.drain()


def password_file(tmp_path: Path, text: str = PASSWORD + "\nsecond line\n") -> str:
    path = tmp_path / "vnc-password"
    path.write_text(text)
    return str(path)


async def client(fake: FakeVnc, endpoint: VncEndpoint) -> bytes:
    """Authenticate to ``fake`` as noded does, send ClientInit; the ServerInit received."""
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await rfb.authenticate(reader, writer, VncEndpoint(
                "127.0.0.1", port, endpoint.password_file, endpoint.tls, endpoint.x509_dir,
                endpoint.x509_verify), timeout=10)
            writer.write(b"\1")
            return await reader.readexactly(len(SERVER_INIT))
        finally:
            writer.close()
    finally:
        server.close()


def server_tls(x509_dir: Path | None, verify_client: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if x509_dir is None:  # anonymous: QEMU's GnuTLS uses ADH, OpenSSL here its EC twin
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
        return ctx
    ctx.load_cert_chain(x509_dir / "server-cert.pem", x509_dir / "server-key.pem")
    if verify_client:
        ctx.load_verify_locations(x509_dir / "ca-cert.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- pure parts ------------------------------------------------------------------------------

def test_des_key_reverses_bits_and_known_vector() -> None:
    # the classic DES worked example: key 133457799BBCDFF1, 0123456789ABCDEF -> 85E813540F0AB405;
    # the VNC password whose bit-reversed bytes are that key
    password = bytes.fromhex("C82CEA9ED93DFB8F")
    assert rfb.des_key(password).hex() == "133457799bbcdff1"
    answer = rfb.vnc_auth_response(password, bytes.fromhex("0123456789ABCDEF") * 2)
    assert answer.hex() == "85e813540f0ab405" * 2


def test_des_key_pads_and_truncates_to_eight_bytes() -> None:
    assert rfb.des_key(b"ab") == bytes([0x86, 0x46, 0, 0, 0, 0, 0, 0])
    assert rfb.des_key(b"12345678extra") == rfb.des_key(b"12345678")
    with pytest.raises(rfb.RfbError, match="challenge of 8 bytes, not 16"):
        rfb.vnc_auth_response(b"x", bytes(8))


PW = VncEndpoint("h", 1, password_file="/pw")
TLS = VncEndpoint("h", 1, tls=True)


@pytest.mark.parametrize(("offered", "endpoint", "expected"), [
    ([1], VncEndpoint("h", 1), 1),
    ([2], PW, 2),
    ([1, 2], PW, 2),          # a password is configured and asked for: use it
    ([1, 2], VncEndpoint("h", 1), 1),
    ([19], TLS, 19),
    ([2, 19], TLS, 19),
    ([19], VncEndpoint("h", 1), 19),
])
def test_choose_security(offered: list[int], endpoint: VncEndpoint, expected: int) -> None:
    assert rfb.choose_security(offered, endpoint) == expected


@pytest.mark.parametrize(("offered", "endpoint", "message"), [
    ([2], VncEndpoint("h", 1), "asks for a password, but the instance has no vnc_password_file"),
    ([1], TLS, r"has vnc_tls but its VNC server does not offer VeNCrypt \(offered: 1 \(None\)\)"),
    ([20, 16], PW, r"offers only security types 20 \(SASL\), 16 \(Tight\); the relay supports"),
])
def test_choose_security_refusals(offered: list[int], endpoint: VncEndpoint,
                                  message: str) -> None:
    with pytest.raises(rfb.RfbError, match=message):
        rfb.choose_security(offered, endpoint)


def test_choose_vencrypt() -> None:
    assert rfb.choose_vencrypt([257, 258], TLS) == rfb.TLS_NONE
    assert rfb.choose_vencrypt([258, 257], PW) == rfb.TLS_VNC
    assert rfb.choose_vencrypt([261, 258], PW) == rfb.X509_VNC
    assert rfb.choose_vencrypt([260], TLS) == rfb.X509_NONE
    with pytest.raises(rfb.RfbError, match="password inside TLS, but the instance has no"):
        rfb.choose_vencrypt([261], TLS)
    with pytest.raises(rfb.RfbError, match=r"only VeNCrypt subtypes 256 \(Plain\), 262"):
        rfb.choose_vencrypt([256, 262], PW)


def test_versions_and_viewer_messages() -> None:
    assert rfb.parse_version(b"RFB 003.008\n", "viewer") == (3, 8)
    with pytest.raises(rfb.RfbError, match="the viewer is not an RFB"):
        rfb.parse_version(b"GET / HTTP/1", "viewer")
    assert [rfb.viewer_minor(v) for v in [(3, 3), (3, 5), (3, 7), (3, 8), (3, 889), (4, 0)]] \
        == [3, 3, 7, 8, 8, 8]
    assert rfb.security_offer(8, None) == b"\1\1"
    assert rfb.security_offer(3, None) == b"\0\0\0\1"
    assert rfb.security_offer(8, "no") == b"\0\0\0\0\2no"
    assert rfb.security_offer(3, "no") == b"\0\0\0\0\0\0\0\2no"
    assert rfb.security_result(8, None) == b"\0\0\0\0"
    assert rfb.security_result(7, None) == b""
    assert rfb.security_result(8, "x") == b"\0\0\0\1\0\0\0\1x"


# -- against the fake server -----------------------------------------------------------------

def test_security_none_passthrough() -> None:
    fake = FakeVnc([rfb.NONE])
    assert asyncio.run(client(fake, VncEndpoint("", 0))) == SERVER_INIT
    assert fake.seen == [rfb.VERSION_38, rfb.NONE, ("client-init", b"\1")]


def test_vnc_authentication(tmp_path: Path) -> None:
    fake = FakeVnc([rfb.VNC_AUTH])
    endpoint = VncEndpoint("", 0, password_file=password_file(tmp_path))
    assert asyncio.run(client(fake, endpoint)) == SERVER_INIT
    # only the first 8 characters count (QEMU's DES key)
    endpoint = VncEndpoint("", 0, password_file=password_file(tmp_path, PASSWORD + "ignored"))
    assert asyncio.run(client(FakeVnc([rfb.VNC_AUTH]), endpoint)) == SERVER_INIT


def test_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    path = password_file(tmp_path, "guessed\n")
    with pytest.raises(rfb.RfbError) as caught:
        asyncio.run(client(FakeVnc([rfb.VNC_AUTH]), VncEndpoint("", 0, password_file=path)))
    assert caught.value.message == (f"the VNC server refused the password from "
                                    f"vnc_password_file {path}: Authentication failed")


def test_password_file_problems(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(Exception, match=f"cannot read vnc_password_file {missing}: it must be"):
        asyncio.run(client(FakeVnc([rfb.VNC_AUTH]), VncEndpoint("", 0, password_file=missing)))
    with pytest.raises(rfb.RfbError, match="asks for a password, but the instance has no"):
        asyncio.run(client(FakeVnc([rfb.VNC_AUTH]), VncEndpoint("", 0)))


def test_unsupported_and_refused(tmp_path: Path) -> None:
    with pytest.raises(rfb.RfbError, match=r"offers only security types 20 \(SASL\)"):
        asyncio.run(client(FakeVnc([20]), VncEndpoint("", 0)))
    with pytest.raises(rfb.RfbError, match="refused the connection: Too many connections"):
        asyncio.run(client(FakeVnc([]), VncEndpoint("", 0)))
    with pytest.raises(rfb.RfbError, match="is not an RFB"):
        asyncio.run(client(FakeVnc([1], version=b"SSH-2.0-x\r\n\0"), VncEndpoint("", 0)))


def test_silent_server_times_out() -> None:
    async def body() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        with pytest.raises(rfb.RfbError, match=r"did not finish the handshake within 0\.2 s"):
            await rfb.authenticate(reader, writer, VncEndpoint("", 0), timeout=0.2)
        writer.close()
        server.close()
    asyncio.run(body())


def test_vencrypt_x509_with_password_and_client_certificate(tmp_path: Path) -> None:
    certs = make_vnc_x509_dir(tmp_path / "x509")
    fake = FakeVnc([rfb.VENCRYPT], subtypes=[rfb.X509_VNC, rfb.X509_NONE],
                   tls=server_tls(certs, verify_client=True))
    endpoint = VncEndpoint("", 0, password_file=password_file(tmp_path), tls=True,
                           x509_dir=str(certs), x509_verify=True)
    assert asyncio.run(client(fake, endpoint)) == SERVER_INIT
    assert rfb.X509_VNC in fake.seen


def test_vencrypt_x509_verification_refuses_another_ca(tmp_path: Path) -> None:
    served = make_vnc_x509_dir(tmp_path / "served")
    other = make_vnc_x509_dir(tmp_path / "other")
    fake = FakeVnc([rfb.VENCRYPT], subtypes=[rfb.X509_NONE], tls=server_tls(served))
    with pytest.raises(rfb.RfbError, match=r"TLS handshake with the VNC server failed: .*"
                                           r"certificate verify failed"):
        asyncio.run(client(fake, VncEndpoint("", 0, tls=True, x509_dir=str(other),
                                             x509_verify=True)))
    # without vnc_x509_verify the certificate is not checked (as QEMU's own clients)
    fake = FakeVnc([rfb.VENCRYPT], subtypes=[rfb.X509_NONE], tls=server_tls(served))
    assert asyncio.run(client(fake, VncEndpoint("", 0, tls=True, x509_dir=str(other)))
                       ) == SERVER_INIT


def test_vencrypt_anonymous_tls(tmp_path: Path) -> None:
    fake = FakeVnc([rfb.VENCRYPT], subtypes=[rfb.TLS_NONE], tls=server_tls(None))
    assert asyncio.run(client(fake, VncEndpoint("", 0, tls=True))) == SERVER_INIT
    fake = FakeVnc([rfb.VENCRYPT], subtypes=[rfb.TLS_VNC], tls=server_tls(None))
    endpoint = VncEndpoint("", 0, password_file=password_file(tmp_path), tls=True)
    assert asyncio.run(client(fake, endpoint)) == SERVER_INIT
    fake = FakeVnc([rfb.VENCRYPT], subtypes=[rfb.TLS_VNC], tls=server_tls(None))
    bad = VncEndpoint("", 0, password_file=password_file(tmp_path, "nope"), tls=True)
    with pytest.raises(rfb.RfbError, match=r"refused the password .*Authentication failed"):
        asyncio.run(client(fake, bad))


# -- the viewer side -------------------------------------------------------------------------

def chunks(*parts: bytes) -> Any:
    queue = list(parts)

    async def receive() -> bytes | None:
        return queue.pop(0) if queue else None
    return receive


def greet(minor: int, *viewer: bytes, failure: str | None = None) -> tuple[bytes, bytes]:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    async def body() -> bytes:
        reader = rfb.MessageReader(chunks(*viewer))
        await rfb.greet_viewer(reader, send, failure, timeout=5)
        return reader.rest()
    rest = asyncio.run(body())
    return b"".join(sent), rest


def test_greet_viewer_versions() -> None:
    # 3.8: type None offered, chosen, SecurityResult OK; fields split across messages
    sent, rest = greet(8, b"RFB 003", b".008\n", b"\1\1extra")
    assert sent == rfb.VERSION_38 + b"\1\1" + b"\0\0\0\0" and rest == b"\1extra"
    sent, rest = greet(7, b"RFB 003.007\n", b"\1\0")
    assert sent == rfb.VERSION_38 + b"\1\1" and rest == b"\0"
    sent, rest = greet(3, b"RFB 003.003\n\1")
    assert sent == rfb.VERSION_38 + b"\0\0\0\1" and rest == b"\1"


def test_greet_viewer_refusals() -> None:
    with pytest.raises(rfb.RfbError, match=r"the viewer chose security type 2 .* only 1"):
        greet(8, b"RFB 003.008\n", b"\2")
    with pytest.raises(rfb.RfbError, match="the viewer left during the handshake"):
        greet(8, b"RFB 003.008\n")
    with pytest.raises(rfb.RfbError, match=r"^the password is wrong$"):
        greet(8, b"RFB 003.008\n", failure="the password is wrong")


# -- noded's /vnc/NAME route -------------------------------------------------------------------

class ServerThread:
    """The fake VNC server on its own loop: the route runs in the test client's."""

    def __init__(self, fake: FakeVnc) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def run() -> None:
            async def serve() -> None:
                server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
                self.port = server.sockets[0].getsockname()[1]
                self.stop = asyncio.Event()
                ready.set()
                await self.stop.wait()
                server.close()
            self.loop.run_until_complete(serve())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


class StubHypervisor:
    def __init__(self, endpoint: VncEndpoint) -> None:
        self.endpoint = endpoint

    async def vnc_endpoint(self, name: str) -> VncEndpoint | None:
        return self.endpoint if name == "vm1" else None


class StubService:
    def __init__(self, endpoint: VncEndpoint) -> None:
        self.hv = StubHypervisor(endpoint)

    def hypervisor(self) -> StubHypervisor:
        return self.hv


@contextlib.contextmanager
def noded(fake: FakeVnc, **security: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from herd.rpc.server import build_app

    server = ServerThread(fake)
    try:
        app = build_app(StubService(VncEndpoint("127.0.0.1", server.port, **security)))  # type: ignore[arg-type]
        with TestClient(app) as test_client:
            yield test_client
    finally:
        server.close()


def test_route_relays_after_authenticating(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeVnc([rfb.VNC_AUTH])
    with noded(fake, password_file=password_file(tmp_path)) as http, \
            http.websocket_connect("/vnc/vm1") as ws:
        assert ws.receive_bytes() == rfb.VERSION_38
        ws.send_bytes(b"RFB 003.008\n")
        assert ws.receive_bytes() == b"\1\1"  # only None: the viewer never sees the password
        ws.send_bytes(b"\1")
        assert ws.receive_bytes() == b"\0\0\0\0"
        ws.send_bytes(b"\1")  # ClientInit, then relayed
        got = b""
        while len(got) < len(SERVER_INIT):
            got += ws.receive_bytes()
        assert got == SERVER_INIT
        ws.send_bytes(b"\3\0\0\0\0\0\2\200\1\340")  # a FramebufferUpdateRequest, echoed
        assert ws.receive_bytes() == b"\3\0\0\0\0\0\2\200\1\340"
        ws.close()
        assert fake.closed.wait(10)  # the viewer's leaving ends noded's VNC connection
    assert ("client-init", b"\1") in fake.seen
    assert PASSWORD not in caplog.text


def test_route_tells_the_viewer_why(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    path = password_file(tmp_path, "wrongpw1\n")
    with noded(FakeVnc([rfb.VNC_AUTH]), password_file=path) as http, \
            http.websocket_connect("/vnc/vm1") as ws:
        assert ws.receive_bytes() == rfb.VERSION_38
        ws.send_bytes(b"RFB 003.008\n")
        answer = ws.receive_bytes()
        reason = (f"VNC console of vm1: the VNC server refused the password from "
                  f"vnc_password_file {path}: Authentication failed").encode()
        assert answer == b"\0" + struct.pack(">I", len(reason)) + reason
    assert "refused the password" in caplog.text
    assert "wrongpw1" not in caplog.text and PASSWORD not in caplog.text


def test_password_file_reading_is_ganetis(tmp_path: Path) -> None:
    """First line, blanks around it dropped; one reading for QEMU's set_password and noded."""
    from herd.hypervisor.base import read_display_password

    path = tmp_path / "pw"
    path.write_text("  s3cret pw \nnot this\n")
    assert read_display_password(str(path), "vnc_password_file") == "s3cret pw"
    path.write_text("")
    with pytest.raises(Exception, match=f"^cannot read vnc_password_file {path}: it must be a "
                                        "readable file whose first line is the password$"):
        read_display_password(str(path), "vnc_password_file")
    path.write_bytes(b"\xff\xfehidden\n")
    with pytest.raises(Exception, match="cannot read spice_password_file") as caught:
        read_display_password(str(path), "spice_password_file")
    assert "hidden" not in str(caught.value)
