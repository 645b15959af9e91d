"""``make demo``: a three-node cluster in a herd-lab, with guests on two nodes, one of them
on a disk mirrored between node2 and node3.

The nodes are network namespaces (lab "demo"); node1 inits the cluster, node2 and node3 join
with their one-time tokens, and the test guest boots on node1 and node2. ``make demo-clean``
(``python -m herd.lab.demo --clean``) ends what the demo started and removes the lab.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import sys
import time

from herd.lab.cluster import Lab, LabError
from herd.lab.single import build_test_guest

LAB = "demo"
#: instance -> (disk template, nodes): one plain file disk, one mirrored between two nodes
GUESTS = {"web1.example.com": ("file", "node1.example.com"),
          "web2.example.com": ("drbd", "node2.example.com:node3.example.com")}


def _show(lab: Lab, node: str, *args: str) -> str:
    print(f"\n[{node}]$ {' '.join(args)}", flush=True)
    proc = lab.run(node, *args)
    print(proc.stdout.rstrip(), flush=True)
    return proc.stdout


#: terminal control sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL/ST), other ESC x
_CONTROLS = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI
                       r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
                       r"|\x1b[0-9@-Z\\-_]|\r")               # two-byte ESC, CR


def printable(transcript: str) -> str:
    """A console transcript without the guest's terminal controls: busybox's shell asks the
    terminal for the cursor position (ESC [6n) at every prompt, which printed into the demo's
    output showed as stray "[6n" (or made a real terminal type its answer)."""
    return _CONTROLS.sub("", transcript)


def _console_transcript(lab: Lab, instance: str, timeout: float = 120) -> str:
    """Attach to the paused guest's console (which resumes it) and run one command."""
    console = lab.popen("node1", "gnt-instance", "console", instance)
    assert console.stdout is not None and console.stdin is not None
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([console.stdout], [], [], 1)
            if ready:
                chunk = os.read(console.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
            if not sent and b"guest# " in out:
                console.stdin.write(b"uname -sr; hostname\n")
                console.stdin.flush()
                sent = True
            elif sent and out.count(b"guest# ") >= 2:
                break
        console.stdin.write(b"\x1d")
        console.stdin.flush()
        console.wait(timeout=10)
    finally:
        if console.poll() is None:
            console.kill()
    return out.decode(errors="replace")


def clean() -> None:
    Lab(LAB).down()


def demo() -> int:
    clean()
    kernel, initrd = build_test_guest()
    lab = Lab(LAB)
    start = time.monotonic()
    lab.up(3)
    print(f"Lab '{LAB}': 3 nodes (network namespaces) up in {time.monotonic() - start:.1f} s",
          flush=True)
    _show(lab, "node1", "gnt-cluster", "init", "--node-name", "node1.example.com",
          "--master-netdev", "eth0", "-s", lab.node("node1").secondary_ip,
          "-H", f"kvm:kernel_path={kernel},initrd_path={initrd}", "cluster.example.com")
    for node in ("node2", "node3"):
        token = _show(lab, node, "herd-join-token").strip()
        info = lab.node(node)
        _show(lab, "node1", "gnt-node", "add", "-s", info.secondary_ip, "--join-token", token,
              info.fqdn)
    _show(lab, "node1", "gnt-node", "list", "-o",
          "name,role,pip,sip,mtotal,mfree,pinst_cnt,sinst_cnt")
    for instance, (template, nodes) in GUESTS.items():
        _show(lab, "node1", "gnt-instance", "add", "-t", template, "-o", "busybox+default",
              "-s", "256M", "--no-name-check", "--no-ip-check", "--no-start",
              "-n", nodes, instance)
        # Start paused so the console sees the boot from its first line (attaching resumes it).
        _show(lab, "node1", "gnt-instance", "startup", "--paused", instance)
    markers = []
    for instance in GUESTS:
        print(f"\n[node1]$ gnt-instance console {instance}   (scripted; Ctrl+] detaches)",
              flush=True)
        transcript = printable(_console_transcript(lab, instance))
        print("\n".join(transcript.splitlines()[-8:]), flush=True)
        markers += [line.strip() for line in transcript.splitlines()
                    if "HERD_GUEST_READY" in line]
    _show(lab, "node1", "gnt-instance", "list", "-o",
          "name,disk_template,pnode,snodes,status,oper_ram")
    info = lab.run("node1", "gnt-instance", "info", "web2.example.com").stdout
    print("\n[node1]$ gnt-instance info web2.example.com | grep -A7 Disks:")
    print(info[info.index("  Disks:"):].rstrip(), flush=True)
    _show(lab, "node1", "gnt-cluster", "verify")
    if len(markers) != len(GUESTS):
        print("\nDEMO FAILED: not every guest printed its boot marker", file=sys.stderr)
        return 1
    print("\nBoth guests booted on their nodes and printed their markers:")
    for marker in markers:
        print(f"  {marker}")
    print("\nTry it yourself (as root):")
    print(f"  {sys.executable.rsplit('/', 1)[0]}/herd-lab --name {LAB} exec node1 -- "
          "gnt-instance list")
    print(f"  ... exec node1 -- gnt-instance console {next(iter(GUESTS))}   (Ctrl+] detaches)")
    print("  ... crash node1, then: exec node2 -- gnt-cluster master-failover")
    print("Clean up with: make demo-clean")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="herd-demo")
    parser.add_argument("--clean", action="store_true", help="remove what the demo made")
    args = parser.parse_args()
    if args.clean:
        clean()
        print("Demo removed")
        return 0
    try:
        return demo()
    except LabError as exc:
        print(f"DEMO FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
