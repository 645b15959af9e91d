"""Host-side reader of the test guest's disk format (header and durable write records).

Why: failover, migration and crash tests must prove that every write the guest acknowledged
(``HERD_ACK seq=N`` on its console) is on the disk afterwards. Booting a guest in ``verify``
mode proves it too, but takes seconds; tests that hold the raw disk file can check it here
in milliseconds. The format is defined by ``tools/guest/init`` (writer) and
``os/busybox/common.sh`` (header); keep the three in sync.

Layout of disk 0:

* block 0 (4 KiB): header, written by the busybox OS definition's create script. First line
  ``HERD-DISK v1 instance=<name> os=<os> created=<epoch>``; optional further lines
  ``key=value`` (``variant``, ``mode``, ``banner``); zero padded.
* blocks 1..15: reserved (header area is 64 KiB).
* block ``16 + N - 1`` holds record ``N`` (N >= 1): one line
  ``HERD-REC v1 seq=<N> boot=<boot id> crc=<crc32 hex>`` where the CRC-32 (zlib's) covers
  the text before `` crc=``; the rest of the block is zero.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BLOCK_SIZE = 4096
HEADER_MAGIC = "HERD-DISK v1"
RECORD_MAGIC = "HERD-REC v1"
#: Byte offset of record 1; everything before it is the header area.
RECORDS_OFFSET = 16 * BLOCK_SIZE
#: Blocks read per I/O while scanning records.
_CHUNK_BLOCKS = 256


@dataclass
class DiskHeader:
    """The parsed header block of a disk created by the busybox OS definition."""

    instance: str
    os: str
    created: int
    extras: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordScan:
    """Outcome of scanning the record area.

    ``last`` is the last sequence number of the run 1..last of valid records; ``gap_at`` is
    the first missing sequence number when some later record exists; ``bad_at`` the first
    slot holding a damaged record (bad checksum, wrong sequence, garbage in the padding).
    """

    last: int
    gap_at: int | None = None
    bad_at: int | None = None
    #: Number of slots holding anything at all (valid or not).
    present: int = 0

    @property
    def ok(self) -> bool:
        return self.gap_at is None and self.bad_at is None


def format_header(instance: str, os_name: str, created: int,
                  extras: dict[str, str] | None = None) -> bytes:
    """Return the 4 KiB header block (the OS create script writes the same bytes)."""
    lines = [f"{HEADER_MAGIC} instance={instance} os={os_name} created={created}"]
    lines += [f"{k}={v}" for k, v in (extras or {}).items()]
    data = ("\n".join(lines) + "\n").encode()
    if len(data) > BLOCK_SIZE:
        raise ValueError("header longer than one block")
    return data.ljust(BLOCK_SIZE, b"\0")


def parse_header(block: bytes) -> DiskHeader | None:
    """Parse a header block; None when the block carries no Herd header."""
    text = block.split(b"\0", 1)[0].decode("utf-8", "replace")
    lines = text.split("\n")
    first = lines[0]
    if not first.startswith(HEADER_MAGIC + " "):
        return None
    fields = dict(kv.split("=", 1) for kv in first.split()[2:] if "=" in kv)
    try:
        created = int(fields.get("created", "0"))
    except ValueError:
        created = 0
    extras = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    return DiskHeader(instance=fields.get("instance", ""), os=fields.get("os", ""),
                      created=created, extras=extras)


def read_header(path: str | os.PathLike[str]) -> DiskHeader | None:
    """Read the header of the disk image (or block device) at ``path``."""
    with open(path, "rb") as f:
        return parse_header(f.read(BLOCK_SIZE))


def record_body(seq: int, boot: str) -> str:
    """The checksummed part of record ``seq``."""
    return f"{RECORD_MAGIC} seq={seq} boot={boot}"


def format_record(seq: int, boot: str = "host") -> bytes:
    """Return the 4 KiB block of record ``seq`` (the guest writer produces the same bytes)."""
    body = record_body(seq, boot)
    line = f"{body} crc={zlib.crc32(body.encode()):08x}\n".encode()
    return line.ljust(BLOCK_SIZE, b"\0")


def write_record(path: str | os.PathLike[str], seq: int, boot: str = "host") -> None:
    """Write record ``seq`` into its slot (for tests that fabricate disks)."""
    with open(path, "r+b") as f:
        f.seek(record_offset(seq))
        f.write(format_record(seq, boot))


def record_offset(seq: int) -> int:
    """Byte offset of the slot of record ``seq``."""
    return RECORDS_OFFSET + (seq - 1) * BLOCK_SIZE


def check_record(block: bytes, seq: int) -> bool | None:
    """None for an empty (all-zero) slot, True for a valid record ``seq``, else False."""
    if not block.strip(b"\0"):
        return None
    line, sep, rest = block.partition(b"\n")
    if not sep or rest.strip(b"\0"):
        return False
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return False
    body, sep, crc = text.rpartition(" crc=")
    if not sep or f"{zlib.crc32(body.encode()):08x}" != crc:
        return False
    parts = body.split()
    return parts[:2] == RECORD_MAGIC.split() and f"seq={seq}" in parts[2:3]


def read_records(path: str | os.PathLike[str], *, limit: int | None = None) -> RecordScan:
    """Scan every record slot of the disk at ``path`` (up to ``limit`` slots).

    Unlike the guest, which stops at the first empty 16 MiB window, this reads the whole
    disk, so a hole anywhere is reported as a gap.
    """
    statuses: dict[int, bool] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if Path(path).is_block_device():
            size = f.seek(0, os.SEEK_END)
        slots = max(0, (size - RECORDS_OFFSET) // BLOCK_SIZE)
        if limit is not None:
            slots = min(slots, limit)
        seq = 1
        f.seek(RECORDS_OFFSET)
        while seq <= slots:
            chunk = f.read(min(_CHUNK_BLOCKS, slots - seq + 1) * BLOCK_SIZE)
            if not chunk:
                break
            if chunk.count(0) == len(chunk):
                seq += len(chunk) // BLOCK_SIZE
                continue
            for i in range(0, len(chunk) - BLOCK_SIZE + 1, BLOCK_SIZE):
                status = check_record(chunk[i:i + BLOCK_SIZE], seq)
                if status is not None:
                    statuses[seq] = status
                seq += 1
    last = 0
    while statuses.get(last + 1) is True:
        last += 1
    scan = RecordScan(last=last, present=len(statuses))
    nxt = last + 1
    if statuses.get(nxt) is False:
        scan.bad_at = nxt
    elif any(s > nxt for s in statuses):
        scan.gap_at = nxt
    return scan
