"""renew-crypto's decisions: which RAPI certificates may be installed, what masterd replaces at
upgrade, which option combinations are refused (the daemons' part is in
tests/integration/test_renew_crypto.py)."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
from cryptography import x509

from herd import errors
from herd.cli import gnt_cluster
from herd.logic import crypto
from herd.objects import Cluster
from herd.opcodes.crypto import OpClusterRenewCrypto
from herd.paths import HerdPaths
from herd.rpc import certs, tls
from tests.tlsutil import legacy_signed

CLUSTER = "cluster.example.com"


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return certs.create_ca(CLUSTER)


def test_own_rapi_certificate_file_is_accepted(ca: tuple[bytes, bytes]) -> None:
    cert, key = certs.create_rapi_certificate(CLUSTER, ["192.0.2.254"])
    chain, key_pem = crypto.check_rapi_certificate_file("/etc/r.pem", key + cert, ca[0])
    assert tls.fingerprint(chain) == tls.fingerprint(cert)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_rapi_certificate_file_that_opens_node_rpc_is_refused(ca: tuple[bytes, bytes]) -> None:
    for cert, key in (legacy_signed(*ca, CLUSTER, []),
                      certs.create_signed(*ca, "node1.example.com", [], [])):
        with pytest.raises(errors.ParameterError,
                           match=r"'/etc/r\.pem' refused: .*noded would accept"):
            crypto.check_rapi_certificate_file("/etc/r.pem", cert + key, ca[0])


def test_expired_or_broken_rapi_certificate_file_is_refused(ca: tuple[bytes, bytes]) -> None:
    cert, key = certs.create_rapi_certificate(CLUSTER, [])
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=20 * 365)
    with pytest.raises(errors.ParameterError, match="the certificate expired on"):
        crypto.check_rapi_certificate_file("/etc/r.pem", cert + key, ca[0], now=later)
    with pytest.raises(errors.ParameterError, match=r"'/etc/r\.pem' holds no private key"):
        crypto.check_rapi_certificate_file("/etc/r.pem", cert, ca[0])


def test_reissue_reason_only_for_certificates_from_before_roles(
        ca: tuple[bytes, bytes]) -> None:
    assert crypto.rapi_certificate_reissue_reason(legacy_signed(*ca, CLUSTER, [])[0], ca[0])
    assert crypto.rapi_certificate_reissue_reason(
        certs.create_rapi_certificate(CLUSTER, [])[0], ca[0]) is None
    assert crypto.rapi_certificate_reissue_reason(b"garbage", ca[0]) is None


@pytest.mark.parametrize(("fields", "problem"), [
    ({}, "nothing to renew"),
    ({"new_rapi_certificate": True, "rapi_certificate": "/r.pem"}, "only one of"),
    ({"rapi_certificate": "r.pem"}, "invalid RAPI certificate path 'r.pem'"),
    ({"renew_ssh_keys": True}, "no SSH keys"),
    ({"new_rapi_certificate": True}, None),
    ({"node_certificates": True}, None),
    ({"rapi_certificate": "/etc/r.pem"}, None),
])
def test_renewal_request_problem(fields: dict[str, object], problem: str | None) -> None:
    found = crypto.renewal_request_problem(OpClusterRenewCrypto(**fields))  # type: ignore[arg-type]
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_upgrade_replaces_old_rapi_certificate_once(tmp_path: Path, ca: tuple[bytes, bytes],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    paths = HerdPaths(tmp_path)
    paths.ensure()
    tls.write_pair(paths.ca_cert, paths.ca_key, *ca)
    old = legacy_signed(*ca, CLUSTER, ["192.0.2.254"])
    tls.write_pair(paths.rapi_cert, paths.rapi_key, *old)
    cluster = Cluster(cluster_name=CLUSTER, master_ip="192.0.2.254")
    with caplog.at_level(logging.WARNING, logger="herd.logic.crypto"):
        assert crypto.upgrade_rapi_certificate(paths, cluster)
        assert not crypto.upgrade_rapi_certificate(paths, cluster)
    assert len([r for r in caplog.records if "replaced the RAPI certificate" in r.message]) == 1
    new = x509.load_pem_x509_certificate(paths.rapi_cert.read_bytes())
    assert certs.certificate_role(new) == tls.ROLE_RAPI
    assert not certs.node_rpc_accepts(new, x509.load_pem_x509_certificate(ca[0]))
    assert CLUSTER in certs.names_of(new)
    assert paths.rapi_key.stat().st_mode & 0o777 == 0o600
    # the key in the log? never
    assert not any("PRIVATE" in r.getMessage() for r in caplog.records)


def test_cli_asks_for_confirmation_or_force(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert gnt_cluster.main(["renew-crypto", "--new-rapi-certificate"]) != 0
    assert "pass -f" in capsys.readouterr().err
    assert gnt_cluster.main(["renew-crypto", "-f"]) != 0
    assert "nothing to renew" in capsys.readouterr().err
    assert gnt_cluster.main(["renew-crypto", "-f", "--new-cluster-certificate"]) != 0
    assert "not supported yet" in capsys.readouterr().err
    assert gnt_cluster.main(["renew-crypto", "-f", "--new-rapi-certificate",
                             "--rapi-certificate", "x.pem"]) != 0
    assert "only one of" in capsys.readouterr().err
