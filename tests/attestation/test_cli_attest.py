"""`teenet attest verify` and `teenet enclave measure`, run in-process like a user would."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from snp_helpers import MEASUREMENT, flip, shared_sim_platform, shared_sim_platform_dir, snp_dir
from teenet.attestation.binding import report_data_for
from teenet.attestation.measure import enclave_measurement
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.cli.main import main

VCEK_MEASUREMENT = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture()
def snp(attestation_fixtures):
    return snp_dir(attestation_fixtures)


# --- genuine SNP evidence -------------------------------------------------------------------

def test_verify_genuine_vcek_report_for_people(capsys, snp):
    code, out, err = run(capsys, "attest", "verify", str(snp / "milan-vcek-report.bin"),
                         "--cert", str(snp / "milan-vcek.der"), "--allow-debug")
    assert code == 0, err
    assert "verified" in out and "vcek" in out and "Milan" in out
    assert "bootloader=2, tee=0, snp=5, microcode=68" in out
    assert "measurement NOT checked against an allowlist" in out
    assert f"pin it with --measurement {VCEK_MEASUREMENT}" in out


def test_verify_genuine_vcek_report_as_json_with_a_pinned_measurement(capsys, snp):
    code, out, err = run(capsys, "attest", "verify", str(snp / "milan-vcek-report.bin"), "--json",
                         "--cert", str(snp / "milan-vcek.der"), "--allow-debug", "--measurement", VCEK_MEASUREMENT)
    assert code == 0, err
    data = json.loads(out)
    assert data["verified"] is True and data["measurement_checked"] is True
    assert data["platform"] == "snp" and data["signer"] == "vcek" and data["version"] == 2
    assert data["measurement"] == VCEK_MEASUREMENT
    assert data["report_data"].startswith("0102030405")
    assert not any("measurement NOT checked" in w for w in data["warnings"])


def test_debug_enclave_refused_without_allow_debug(capsys, snp):
    code, _, err = run(capsys, "attest", "verify", str(snp / "milan-vcek-report.bin"),
                       "--cert", str(snp / "milan-vcek.der"))
    assert code == 1
    assert "policy.debug" in one_error_line(err)


def test_expired_vlek_needs_a_pinned_time(capsys, snp):
    args = ["attest", "verify", str(snp / "milan-vlek-report.bin"), "--cert", str(snp / "milan-vlek.der"), "--json"]
    code, _, err = run(capsys, *args)
    assert code == 1 and "snp.validity" in one_error_line(err)
    code, out, err = run(capsys, *args, "--at", "2025-06-01T00:00:00Z")
    assert code == 0, err
    data = json.loads(out)
    assert data["signer"] == "vlek" and data["vmpl"] == 1 and data["version"] == 3


def test_wrong_measurement_refused(capsys, snp):
    code, _, err = run(capsys, "attest", "verify", str(snp / "milan-vcek-report.bin"), "--allow-debug",
                       "--cert", str(snp / "milan-vcek.der"), "--measurement", "00" * 48)
    assert code == 1 and "policy.measurement" in one_error_line(err)


def test_tampered_report_refused_in_one_line(capsys, snp, tmp_path):
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(flip((snp / "milan-vcek-report.bin").read_bytes(), 0x90))
    code, out, err = run(capsys, "attest", "verify", str(tampered), "--cert", str(snp / "milan-vcek.der"),
                         "--allow-debug")
    assert code == 1 and out == ""
    assert "snp.signature" in one_error_line(err)


@pytest.mark.parametrize("content, expected", [
    (b"\x02\x00\x00\x00" + b"\x00" * 300, "neither evidence JSON nor a known report or quote (304 bytes)"),
    (b"\xff" * 7, "neither evidence JSON nor a known report or quote (7 bytes)"),
    (b"{not json at all", "not JSON evidence"),
    (b'{"platform": "sev", "report": ""}', "unknown platform"),
])
def test_truncated_or_garbage_files_give_a_clear_error(capsys, tmp_path, content, expected):
    path = tmp_path / "evidence.bin"
    path.write_bytes(content)
    code, _, err = run(capsys, "attest", "verify", str(path))
    assert code == 1
    assert expected in one_error_line(err)


def test_truncated_snp_report_with_explicit_platform(capsys, snp, tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes((snp / "milan-vcek-report.bin").read_bytes()[:1000])
    code, _, err = run(capsys, "attest", "verify", str(path), "--platform", "snp")
    assert code == 1
    line = one_error_line(err)
    assert "snp.parse" in line and "1184 bytes" in line


@pytest.mark.parametrize("argv, expected", [
    (["--measurement", "xyz"], "--measurement: not hex"),
    (["--report-data", "abcd"], "--report-data: expected 64 bytes"),
    (["--at", "yesterday"], "--at: not an ISO-8601 time"),
    (["--cert", "/nonexistent/vcek.der"], "certificate file not found"),
])
def test_bad_options_give_a_clear_error(capsys, snp, argv, expected):
    code, _, err = run(capsys, "attest", "verify", str(snp / "milan-vcek-report.bin"), *argv)
    assert code == 1 and expected in one_error_line(err)


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "attest", "verify", str(tmp_path / "absent.json"))
    assert code == 1 and "file not found" in one_error_line(err)


# --- simulated evidence -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_evidence_file(tmp_path_factory):
    binding = report_data_for("compute", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    evidence = UnsafeSimulatedAttester(shared_sim_platform(), MEASUREMENT).attest(binding)
    path = tmp_path_factory.mktemp("sim") / "evidence.json"
    path.write_bytes(evidence.to_bytes())
    return path, binding


def test_sim_evidence_refused_without_allow_simulated(capsys, sim_evidence_file):
    path, _ = sim_evidence_file
    code, _, err = run(capsys, "attest", "verify", str(path))
    assert code == 1
    line = one_error_line(err)
    assert "policy.hardware" in line and "SIMULATED" in line
    code, _, err = run(capsys, "attest", "verify", str(path), "--sim-root", str(shared_sim_platform_dir()))
    assert code == 1 and "needs --allow-simulated" in one_error_line(err)


def test_sim_evidence_accepted_only_with_allow_simulated_and_its_root(capsys, sim_evidence_file):
    path, binding = sim_evidence_file
    code, _, err = run(capsys, "attest", "verify", str(path), "--allow-simulated")
    assert code == 1 and "needs --sim-root" in one_error_line(err)
    code, out, err = run(capsys, "attest", "verify", str(path), "--allow-simulated", "--json",
                         "--sim-root", str(shared_sim_platform_dir()), "--measurement", MEASUREMENT.hex(),
                         "--report-data", binding.hex())
    assert code == 0, err
    data = json.loads(out)
    assert data["verified"] and data["simulated"] and data["platform"] == "sim-snp"
    assert data["measurement_checked"] and data["report_data_checked"]
    assert any("SIMULATED" in w for w in data["warnings"])


def test_sim_evidence_bound_to_something_else_refused(capsys, sim_evidence_file):
    path, _ = sim_evidence_file
    code, _, err = run(capsys, "attest", "verify", str(path), "--allow-simulated",
                       "--sim-root", str(shared_sim_platform_dir()), "--report-data", "00" * 64)
    assert code == 1 and "binding.report_data" in one_error_line(err)


def test_sim_evidence_relabelled_as_snp_refused(capsys, sim_evidence_file, tmp_path):
    path, _ = sim_evidence_file
    from teenet.attestation.evidence import Evidence, Platform

    relabelled = replace(Evidence.from_bytes(path.read_bytes()), platform=Platform.SNP)
    target = tmp_path / "relabelled.json"
    target.write_bytes(relabelled.to_bytes())
    code, _, err = run(capsys, "attest", "verify", str(target), "--allow-simulated",
                       "--sim-root", str(shared_sim_platform_dir()))
    assert code == 1 and "snp.root" in one_error_line(err)


# --- enclave measure -----------------------------------------------------------------------

def test_enclave_measure_prints_the_measurement(capsys):
    code, out, _ = run(capsys, "enclave", "measure")
    assert code == 0
    assert out.strip() == enclave_measurement().hex()


def test_enclave_measure_json_includes_the_manifest(capsys):
    code, out, _ = run(capsys, "enclave", "measure", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["measurement"] == enclave_measurement().hex()
    assert "teenet/attestation/snp.py" in data["manifest"]["files"]
    assert data["manifest"]["format"] == "teenet-enclave-manifest/v1"
