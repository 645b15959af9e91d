"""The RFB (VNC) security handshakes of noded's VNC relay.

Ganeti admins secure QEMU's VNC with a password (``vnc_password_file``: RFB's "VNC
Authentication") and/or TLS (``vnc_tls``: VeNCrypt, anonymous or X.509). The web manager's
noVNC should need neither the password nor TLS to the guest, and the VNC password must not
reach the browser. So noded, which opens the guest's VNC connection anyway, does the security
handshake with QEMU itself (:func:`authenticate`), then offers the viewer security type None
(:func:`greet_viewer`), and from the viewer's ClientInit on relays bytes unchanged: ServerInit,
framebuffer updates and input are the same whatever security was negotiated. The viewer is
already authenticated (web session, one-time ticket, node RPC mutual TLS) before it gets here.

The protocol (RFC 6143 and the VeNCrypt extension) is spoken as QEMU speaks it: version 3.8
towards the server; 3.3, 3.7 and 3.8 towards the viewer. Decisions are pure functions; the
two async functions only move bytes. Nothing here logs, and no error holds the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

from herd.errors import HerdError
from herd.hypervisor.base import VncEndpoint, read_display_password

NONE, VNC_AUTH, VENCRYPT = 1, 2, 19
TLS_NONE, TLS_VNC, X509_NONE, X509_VNC = 257, 258, 260, 261
SECURITY_NAMES = {0: "Invalid", 1: "None", 2: "VNC Authentication", 5: "RA2", 6: "RA2ne",
                  16: "Tight", 17: "Ultra", 18: "TLS", 19: "VeNCrypt", 20: "SASL",
                  22: "xvp", 30: "Apple ARD", 256: "Plain", 257: "TLSNone", 258: "TLSVnc",
                  259: "TLSPlain", 260: "X509None", 261: "X509Vnc", 262: "X509Plain",
                  263: "TLSSASL", 264: "X509SASL"}
#: VeNCrypt subtypes in the order noded prefers them (certificates over anonymous TLS).
VENCRYPT_ORDER = (X509_VNC, X509_NONE, TLS_VNC, TLS_NONE)
VERSION_38 = b"RFB 003.008\n"
#: A server or viewer that takes longer than this over its part of the handshake is dropped.
SERVER_SECONDS = 15.0
VIEWER_SECONDS = 60.0
#: The longest failure reason read from a server (QEMU's are a few words).
MAX_REASON = 4096


_CLIENT_CERT_HINT = ("with vnc_x509_verify QEMU wants a client certificate signed by its CA: "
                     "noded presents {0}/client-cert.pem and {0}/client-key.pem")


class RfbError(HerdError):
    """Why a handshake failed; safe to show to the viewer and to log (no password)."""


class ByteReader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


# -- pure decisions ------------------------------------------------------------------------

def _name(kind: int) -> str:
    return f"{kind} ({SECURITY_NAMES.get(kind, 'unknown')})"


def parse_version(data: bytes, who: str) -> tuple[int, int]:
    """``b"RFB 003.008\\n"`` -> (3, 8); anything else is not an RFB peer."""
    if len(data) != 12 or not data.startswith(b"RFB ") or data[7:8] != b"." \
            or data[11:] != b"\n" or not (data[4:7] + data[8:11]).isdigit():
        raise RfbError(f"the {who} is not an RFB (VNC) peer: it sent {data[:12]!r} "
                       "where the protocol version belongs")
    return int(data[4:7]), int(data[8:11])


def viewer_minor(version: tuple[int, int]) -> int:
    """The RFB 3.x variant to speak with a viewer that sent ``version``: 3.8 for 3.8 and
    later, 3.7 for 3.7, else 3.3 (what RFC 6143 says a server should fall back to)."""
    major, minor = version
    if major > 3 or minor >= 8:
        return 8
    return 7 if minor == 7 else 3


def choose_security(offered: list[int], endpoint: VncEndpoint) -> int:
    """The security type to pick from the server's ``offered`` ones. With ``vnc_tls`` only
    VeNCrypt will do (another type means this is not the TLS server the instance was started
    with); a password is used when the server asks for one, None when it asks for nothing."""
    if endpoint.tls:
        if VENCRYPT in offered:
            return VENCRYPT
        raise RfbError("the instance has vnc_tls but its VNC server does not offer VeNCrypt "
                       f"(offered: {', '.join(_name(t) for t in offered)})")
    if NONE in offered and not (endpoint.password_file and VNC_AUTH in offered):
        return NONE
    if VNC_AUTH in offered:
        if not endpoint.password_file:
            raise RfbError("the VNC server asks for a password, but the instance has no "
                           "vnc_password_file")
        return VNC_AUTH
    if VENCRYPT in offered:
        return VENCRYPT
    raise RfbError("the VNC server offers only security types "
                   f"{', '.join(_name(t) for t in offered)}; the relay supports "
                   "1 (None), 2 (VNC Authentication) and 19 (VeNCrypt)")


def choose_vencrypt(offered: list[int], endpoint: VncEndpoint) -> int:
    """The VeNCrypt subtype to pick: a TLS one (Plain would send a password in clear and SASL
    needs an account), with VNC Authentication inside only when there is a password."""
    for subtype in VENCRYPT_ORDER:
        if subtype in offered and (endpoint.password_file or subtype in (X509_NONE, TLS_NONE)):
            return subtype
    if any(t in offered for t in (X509_VNC, TLS_VNC)):
        raise RfbError("the VNC server asks for a password inside TLS, but the instance has "
                       "no vnc_password_file")
    raise RfbError("the VNC server offers only VeNCrypt subtypes "
                   f"{', '.join(_name(t) for t in offered)}; the relay supports "
                   "257 (TLSNone), 258 (TLSVnc), 260 (X509None) and 261 (X509Vnc)")


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def des_key(password: bytes) -> bytes:
    """The DES key of VNC Authentication: the password's first 8 bytes, zero-padded, each
    byte's bits reversed (the original VNC's DES code took the key bits the other way
    round, and every VNC server since does the same)."""
    return bytes(_reverse_bits(b) for b in password[:8].ljust(8, b"\0"))


def vnc_auth_response(password: bytes, challenge: bytes) -> bytes:
    """The answer to a 16-byte VNC Authentication challenge: each 8-byte half DES-encrypted
    (ECB) with :func:`des_key`. DES is Triple DES with the key three times."""
    if len(challenge) != 16:
        raise RfbError(f"VNC Authentication challenge of {len(challenge)} bytes, not 16")
    try:  # cryptography >= 43 keeps the old ciphers apart
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.algorithms import (  # type: ignore[no-redef]
            TripleDES,
        )
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(TripleDES(des_key(password) * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def tls_context(subtype: int, endpoint: VncEndpoint) -> ssl.SSLContext:
    """The client TLS context for a VeNCrypt ``subtype``. TLS*: anonymous Diffie-Hellman, as
    QEMU's tls-creds-anon (GnuTLS "+ANON-DH": TLS 1.2, no certificates, so OpenSSL's aNULL
    suites, which its default security level refuses). X509*: the server's certificate is
    checked against ``x509_dir/ca-cert.pem`` with ``vnc_x509_verify`` (not its name: noded
    reaches it on a local address), and ``client-cert.pem``/``client-key.pem`` from that
    directory are presented when present (QEMU asks for one with verify-peer=on)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if subtype in (TLS_NONE, TLS_VNC):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
        return ctx
    directory = endpoint.x509_dir
    if endpoint.x509_verify:
        ca = os.path.join(directory, "ca-cert.pem")
        try:
            ctx.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise RfbError(f"cannot load the VNC CA certificate {ca} (vnc_x509_verify): "
                           f"{exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    cert, key = (os.path.join(directory, f"client-{n}.pem") for n in ("cert", "key"))
    if directory and os.path.exists(cert) and os.path.exists(key):
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise RfbError(f"cannot load the VNC client certificate {cert}: {exc}") from None
    return ctx


def security_offer(minor: int, failure: str | None) -> bytes:
    """What noded sends the viewer after the versions: type None only, or (``failure``) no
    type and the reason, which viewers show (noVNC: "Security negotiation failed")."""
    reason = (failure or "").encode()
    if minor == 3:  # the server decides: a U32 type, 0 = failed + reason
        return struct.pack(">I", 1) if failure is None else \
            struct.pack(">II", 0, len(reason)) + reason
    if failure is None:
        return bytes([1, NONE])
    return bytes([0]) + struct.pack(">I", len(reason)) + reason


def security_result(minor: int, failure: str | None) -> bytes:
    """The SecurityResult for the viewer's choice of None: only RFB 3.8 sends one for None
    (and only 3.8 adds a reason to a failure)."""
    if minor < 8:
        return b""
    if failure is None:
        return struct.pack(">I", 0)
    reason = failure.encode()
    return struct.pack(">II", 1, len(reason)) + reason


# -- the server side: noded as a VNC client -------------------------------------------------

async def _read_reason(reader: ByteReader) -> str:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    data = await reader.readexactly(min(length, MAX_REASON))
    # printable only: it goes to a log line and the viewer (QEMU counts a C string's NUL)
    text = "".join(c for c in data.decode(errors="replace") if c.isprintable())
    return text.strip() or "no reason given"


async def _security_result(reader: ByteReader, minor: int, what: str) -> None:
    (result,) = struct.unpack(">I", await reader.readexactly(4))
    if result == 0:
        return
    reason = await _read_reason(reader) if minor >= 8 else "no reason given"
    raise RfbError(f"the VNC server refused {what}: {reason}")


async def _vnc_auth(reader: ByteReader, writer: asyncio.StreamWriter,
                    endpoint: VncEndpoint) -> None:
    password = await asyncio.to_thread(read_display_password, endpoint.password_file,
                                       "vnc_password_file")
    challenge = await reader.readexactly(16)
    writer.write(vnc_auth_response(password.encode(), challenge))
    await writer.drain()


async def _vencrypt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    endpoint: VncEndpoint) -> int:
    """VeNCrypt 0.2 up to the end of the TLS handshake; returns the chosen subtype."""
    major, minor = await reader.readexactly(2)
    if (major, minor) < (0, 2):
        raise RfbError(f"the VNC server speaks VeNCrypt {major}.{minor}; the relay needs 0.2")
    writer.write(bytes([0, 2]))
    await writer.drain()
    if (await reader.readexactly(1))[0] != 0:
        raise RfbError("the VNC server refused VeNCrypt version 0.2")
    (count,) = await reader.readexactly(1)
    offered = list(struct.unpack(f">{count}I", await reader.readexactly(4 * count)))
    subtype = choose_vencrypt(offered, endpoint)
    context = tls_context(subtype, endpoint)
    writer.write(struct.pack(">I", subtype))
    await writer.drain()
    if (await reader.readexactly(1))[0] != 1:
        raise RfbError(f"the VNC server refused VeNCrypt subtype {_name(subtype)}")
    try:
        await writer.start_tls(context)
    except (ssl.SSLError, ConnectionError) as exc:
        hint = ""
        if subtype in (X509_NONE, X509_VNC):
            hint = "; " + _CLIENT_CERT_HINT.format(endpoint.x509_dir or "<vnc_x509_path>")
        raise RfbError(f"TLS handshake with the VNC server failed: {exc}{hint}") from None
    return subtype


async def authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       endpoint: VncEndpoint, timeout: float = SERVER_SECONDS) -> None:
    """The RFB handshake with the guest's VNC server up to (not including) ClientInit: the
    version, the security type, TLS and the password as ``endpoint`` says. With TLS the
    writer is switched to it in place (StreamWriter.start_tls). RfbError says what failed."""
    try:
        async with asyncio.timeout(timeout):
            await _authenticate(reader, writer, endpoint)
    except TimeoutError:
        raise RfbError(f"the VNC server did not finish the handshake within {timeout:g} s"
                       ) from None
    except asyncio.IncompleteReadError:
        raise RfbError("the VNC server closed the connection during the handshake") from None
    except OSError as exc:  # reset, or TLS refused after the handshake (a TLS 1.3 server
        # checks the client's certificate then)
        raise RfbError(f"the VNC connection failed during the handshake: {exc}") from None


async def _authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        endpoint: VncEndpoint) -> None:
    major, minor = parse_version(await reader.readexactly(12), "VNC server")
    if (major, minor) < (3, 3):
        raise RfbError(f"the VNC server speaks RFB {major}.{minor}; the relay needs 3.3 or later")
    minor = 8 if (major, minor) >= (3, 8) else (7 if minor == 7 else 3)
    writer.write(f"RFB 003.00{minor}\n".encode())
    await writer.drain()
    if minor == 3:
        (chosen,) = struct.unpack(">I", await reader.readexactly(4))
        if chosen == 0:
            raise RfbError(f"the VNC server refused the connection: {await _read_reason(reader)}")
        offered = [chosen]
        kind = choose_security(offered, endpoint)
    else:
        (count,) = await reader.readexactly(1)
        if count == 0:
            raise RfbError(f"the VNC server refused the connection: {await _read_reason(reader)}")
        offered = list(await reader.readexactly(count))
        kind = choose_security(offered, endpoint)
        writer.write(bytes([kind]))
        await writer.drain()
    if kind == NONE:
        if minor >= 8:
            await _security_result(reader, minor, "the connection")
        return
    if kind == VNC_AUTH:
        await _vnc_auth(reader, writer, endpoint)
        await _security_result(reader, minor, f"the password from vnc_password_file "
                                              f"{endpoint.password_file}")
        return
    subtype = await _vencrypt(reader, writer, endpoint)
    try:
        if subtype in (TLS_VNC, X509_VNC):
            await _vnc_auth(reader, writer, endpoint)
            await _security_result(reader, 8, f"the password from vnc_password_file "
                                              f"{endpoint.password_file}")
        else:  # VeNCrypt always ends with a SecurityResult, with a reason (QEMU: 3.8 only)
            await _security_result(reader, 8, "the TLS connection")
    except (asyncio.IncompleteReadError, OSError) as exc:
        if subtype not in (X509_NONE, X509_VNC):
            raise
        # TLS 1.3: the server checks the client's certificate after the client finished
        # its handshake, so a refused one shows up as the connection closing here
        raise RfbError(f"the VNC server closed the TLS connection ({type(exc).__name__}): "
                       f"{_CLIENT_CERT_HINT.format(endpoint.x509_dir or '<vnc_x509_path>')}"
                       ) from None


# -- the viewer side: noded as a VNC server without security --------------------------------

class MessageReader:
    """Exact reads over a message stream (the viewer's WebSocket): RFB fields need not line
    up with messages. What was read past the handshake is handed on with :meth:`rest`."""

    def __init__(self, receive: Callable[[], Awaitable[bytes | None]]) -> None:
        self._receive = receive
        self._buffer = bytearray()

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = await self._receive()
            if data is None:
                raise asyncio.IncompleteReadError(bytes(self._buffer), n)
            self._buffer += data
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def rest(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


async def greet_viewer(reader: ByteReader, send: Callable[[bytes], Awaitable[None]],
                       failure: str | None = None, timeout: float = VIEWER_SECONDS) -> None:
    """The viewer's RFB handshake up to ClientInit, with security None. With ``failure``
    (noded could not authenticate to the guest) the viewer is told why and RfbError raised.
    The viewer's ClientInit and all after it are the relay's."""
    try:
        async with asyncio.timeout(timeout):
            await send(VERSION_38)
            minor = viewer_minor(parse_version(await reader.readexactly(12), "viewer"))
            await send(security_offer(minor, failure))
            if failure is not None:
                raise RfbError(failure)
            if minor == 3:
                return
            (chosen,) = await reader.readexactly(1)
            if chosen != NONE:
                problem = f"security type {_name(chosen)} was not offered: only 1 (None) is"
                with contextlib.suppress(Exception):
                    await send(security_result(minor, problem))
                raise RfbError(f"the viewer chose {problem}")
            result = security_result(minor, None)
            if result:
                await send(result)
    except TimeoutError:
        raise RfbError(f"the viewer did not finish the handshake within {timeout:g} s"
                       ) from None
    except asyncio.IncompleteReadError:
        raise RfbError("the viewer left during the handshake") from None
