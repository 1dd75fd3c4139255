"""Consortium, node and analyst configs: the examples load; each bad field is named with its line."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from teenet.config import (AnalystConfig, Consortium, NodeConfig, load_analyst_config, load_consortium,
                           load_node_config)
from teenet.errors import InputError
from teenet.identity import b64_raw
from teenet.yamlload import load_yaml

from config_sandbox import CONFIGS, MEASUREMENT, Sandbox


def edited(sandbox: Sandbox, relative: str, old: str, new: str) -> tuple[Path, int]:
    """Rewrite one piece of a sandbox file; return the path and the line the new text is on."""
    path = sandbox.root / relative
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1 + (len(new) - len(new.lstrip("\n")))
    path.write_text(text.replace(old, new, 1))
    return path, line


# Where an error is reported a line away from the edit: a field added on the next line, or
# a section named as a whole (policy_from_config reports unknown keys for the section).
LINE_OFFSET = {"extra": 1, "members.bank.endpoint": 1, "attestation": -1, "tables": -1, "policy.tables.loans": 1}


def refused(load: Callable[[Path], object], path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load(path)
    assert "\n" not in str(info.value)
    return info.value


# --- consortium -------------------------------------------------------------------------

def test_example_consortium_loads(sandbox: Sandbox) -> None:
    c: Consortium = sandbox.consortium
    assert c.name == "demo" and c.coordinator_name == "coordinator" and c.coordinator_endpoint == "127.0.0.1:7400"
    assert [m.name for m in c.analysts()] == ["analyst"]
    assert c.member("compute-1", "compute").endpoint == "127.0.0.1:7443"
    assert c.members["bank"].tables["customers"][0] == "customer_id"
    assert b64_raw(c.members["telco"].keys.signing) == b64_raw(sandbox.keys["telco"].public().signing)
    assert c.attestation["measurements"] == [MEASUREMENT]
    c.result_policy()  # builds
    with pytest.raises(TypeError):
        c.members["eve"] = c.members["bank"]  # type: ignore[index]


def test_member_lookup_errors_name_who_exists(sandbox: Sandbox) -> None:
    with pytest.raises(InputError, match="'eve' is not a member of consortium 'demo'"):
        sandbox.consortium.member("eve")
    with pytest.raises(InputError, match="'bank' is a data member, expected a compute member"):
        sandbox.consortium.member("bank", "compute")


def test_example_with_placeholders_does_not_load() -> None:
    error = refused(load_consortium, CONFIGS / "consortium.example.yaml")
    assert error.field == "attestation.measurements" and error.line is not None


@pytest.mark.parametrize("old, new, field, words", [
    ("    role: data\n    signing_key", "    role: dat\n    signing_key", "members.bank.role", "'dat' is not one of: data, compute, analyst"),
    ("  bank:\n", "  Bank:\n", "members.Bank", "is not a member name"),
    ("    role: data\n    signing_key", "    role: data\n    endpoint: '1.2.3.4:5'\n    signing_key",
     "members.bank.endpoint", "unknown field 'endpoint'; allowed fields: hpke_key, role, signing_key, tables"),
    ('    endpoint: "127.0.0.1:7443"\n', "", "members.compute-1.endpoint", "missing required field 'endpoint'"),
    ('    endpoint: "127.0.0.1:7443"\n', '    endpoint: "127.0.0.1:70000"\n', "members.compute-1.endpoint", "port from 1 to 65535"),
    ("      customers: [customer_id,", "      ../customers: [customer_id,", "members.bank.tables.../customers", "is not a table name"),
    ("      usage: [customer_id,", "      usage: [customer id,", "members.telco.tables.usage[0]", "is not a column name"),
    ("consortium: demo", "consortium: demo\nextra: 1", "extra", "unknown field 'extra'"),
    ('coordinator: {name: coordinator, endpoint: "127.0.0.1:7400"}', 'coordinator: {name: analyst, endpoint: "127.0.0.1:7400"}',
     "coordinator.name", "'analyst' is also a member's name"),
    (f"measurements: [{MEASUREMENT}]", "measurements: [not-hex]", "attestation.measurements", "a measurement is not hex"),
    ("allow_simulated: true", "allow_simulated: maybe", "attestation.allow_simulated", "expected true or false"),
    ("allow_simulated: true", "allow_simulatd: true", "attestation", "unknown key(s) allow_simulatd"),
])
def test_bad_consortium_field_named(sandbox: Sandbox, old: str, new: str, field: str, words: str) -> None:
    path, line = edited(sandbox, "consortium.yaml", old, new)
    error = refused(load_consortium, path)
    assert error.field == field and words in str(error), str(error)
    if new:
        assert error.line == line + LINE_OFFSET.get(field, 0), str(error)


@pytest.mark.parametrize("kind, value, words", [
    ("signing_key", "'!!!'", "not valid base64"),
    ("signing_key", "AAAA", "must be 32 bytes, got 3"),
    ("hpke_key", "12", "expected base64 of a raw 32-byte public key"),
])
def test_bad_public_key_named(sandbox: Sandbox, kind: str, value: str, words: str) -> None:
    current = b64_raw(getattr(sandbox.keys["insurer"].public(), "signing" if kind == "signing_key" else "hpke"))
    path, line = edited(sandbox, "consortium.yaml", f"{kind}: {current}", f"{kind}: {value}")
    error = refused(load_consortium, path)
    assert error.field == f"members.insurer.{kind}" and error.line == line and words in str(error), str(error)


def test_one_key_for_two_members_refused(sandbox: Sandbox) -> None:
    bank_key = b64_raw(sandbox.keys["bank"].public().signing)
    telco_key = b64_raw(sandbox.keys["telco"].public().signing)
    path, line = edited(sandbox, "consortium.yaml", f"signing_key: {telco_key}", f"signing_key: {bank_key}")
    error = refused(load_consortium, path)
    assert error.field == "members.telco.signing_key" and error.line == line
    assert "already bank.signing_key's" in str(error)


# --- node -------------------------------------------------------------------------------

def test_example_data_node_loads(sandbox: Sandbox) -> None:
    cfg: NodeConfig = load_node_config(sandbox.root / "bank" / "node.yaml")
    bank = sandbox.root / "bank"
    assert (cfg.node, cfg.role, cfg.member.role) == ("bank", "data", "data")
    assert cfg.consortium.name == "demo" and cfg.coordinator == "127.0.0.1:7400"
    assert cfg.state_dir == bank / "state" and cfg.keys_dir == bank / "keys"
    assert cfg.tls.ca == bank / ".." / "pki" / "ca.pem"
    assert cfg.enclave.backend == "sim" and cfg.enclave.sim_dir == bank / ".." / "sim-platform"
    assert cfg.tables["customers"].format == "csv" and cfg.tables["customers"].path == bank / "data" / "customers.csv"
    assert cfg.poll_interval == 0.5 and cfg.listen is None
    assert cfg.poll_wait == 5.0  # a long poll by default
    assert cfg.enclave.intel_collateral is None
    policy = cfg.policy
    assert policy.analysts == ("analyst",) and policy.id_recipients == ("bank",) and policy.min_group_size == 10
    assert policy.tables["customers"] == ("customer_id", "age", "income", "region", "defaulted")
    assert policy.auto_approve[0].release_kinds == ("size", "aggregate", "model", "metrics")
    policy.compute_policy()
    with pytest.raises(InputError):
        policy.data_policy()


def test_example_compute_node_loads(sandbox: Sandbox) -> None:
    cfg = load_node_config(sandbox.root / "compute-1" / "node.yaml")
    assert cfg.role == "compute" and cfg.listen == "127.0.0.1:7443" and dict(cfg.tables) == {}
    assert cfg.policy.data_attestation is not None and cfg.policy.data_attestation["allow_simulated"] is True
    assert cfg.policy.compute_attestation is None
    cfg.policy.data_policy()


def test_a_compute_nodes_result_padding_floor_is_a_power_of_two(sandbox: Sandbox) -> None:
    assert load_node_config(sandbox.root / "compute-1" / "node.yaml").result_pad_floor == 4096
    path, _ = edited(sandbox, "compute-1/node.yaml", "result_pad_floor: 4096", "result_pad_floor: 65536")
    assert load_node_config(path).result_pad_floor == 65536
    path, line = edited(sandbox, "compute-1/node.yaml", "result_pad_floor: 65536", "result_pad_floor: 5000")
    error = refused(load_node_config, path)
    assert error.field == "result_pad_floor" and error.line == line and "power of two" in str(error)


def test_compute_node_may_pin_compute_enclaves_too(sandbox: Sandbox) -> None:
    path, _ = edited(sandbox, "compute-1/node.yaml", "  data_attestation:",
                     f"  compute_attestation: {{measurements: [{MEASUREMENT}]}}\n  data_attestation:")
    assert load_node_config(path).policy.compute_policy() is not None


def test_all_table_formats_load(sandbox: Sandbox) -> None:
    path, _ = edited(sandbox, "bank/node.yaml", "  customers: {format: csv, path: data/customers.csv}\n",
                     "  customers: {format: parquet, path: /srv/customers.parquet}\n"
                     "  loans: {format: postgres, dsn_env: BANK_PG_DSN, query: 'SELECT * FROM loans'}\n"
                     "  accounts: {format: sqlite, path: data/bank.db, query: 'SELECT * FROM accounts'}\n")
    tables = load_node_config(path).tables
    assert tables["customers"].path == Path("/srv/customers.parquet")
    assert tables["loans"].dsn_env == "BANK_PG_DSN" and tables["loans"].path is None
    assert tables["accounts"].query == "SELECT * FROM accounts"


def test_coordinator_override(sandbox: Sandbox) -> None:
    path, _ = edited(sandbox, "bank/node.yaml", '# coordinator: "127.0.0.1:7400"', 'coordinator: "10.0.0.5:7400"')
    assert load_node_config(path).coordinator == "10.0.0.5:7400"


@pytest.mark.parametrize("old, new, field, words", [
    ("role: data ", "role: compute ", "role", "the consortium says 'bank' is a data member, not compute"),
    ("node: bank", "node: hospital", "node", "'hospital' is not a member of consortium 'demo'"),
    ("node: bank", "nodes: bank", "nodes", "unknown field 'nodes'"),
    ("# coordinator:", "listen: '127.0.0.1:9'\n# coordinator:", "listen", "a data node has no 'listen'"),
    ("state_dir: state ", "state_dir: 7 ", "state_dir", "expected a file or folder path, found number 7 (quote it to make it text)"),
    ("format: csv, path", "format: excel, path", "tables.customers.format", "'excel' is not one of: csv, parquet, sqlite, postgres"),
    ("{format: csv, path: data/customers.csv}", "{format: postgres, query: 'SELECT 1'}", "tables.customers.dsn_env",
     "missing required field 'dsn_env'"),
    ("{format: csv, path: data/customers.csv}", "{format: postgres, dsn_env: 'postgres://u:pw@h/db', query: 'SELECT 1'}",
     "tables.customers.dsn_env", "is not an environment variable name"),
    ("{format: csv, path: data/customers.csv}", "{format: sqlite, path: bank.db}", "tables.customers.query",
     "missing required field 'query'"),
    ("{format: csv, path: data/customers.csv}", "{format: csv, path: x.csv, query: 'SELECT 1'}", "tables.customers.query",
     "unknown field 'query'"),
    ("  customers: {format: csv", "  clients: {format: csv", "tables", "customers are published in the consortium catalog but have no source"),
    ("enclave: {backend: sim, sim_dir: ../sim-platform}", "enclave: {backend: sev}", "enclave.backend", "'sev' is not one of: sim, snp, tdx, sgx"),
    ("enclave: {backend: sim, sim_dir: ../sim-platform}", "enclave: {backend: sim}", "enclave.sim_dir", "missing required field 'sim_dir'"),
    ("enclave: {backend: sim, sim_dir: ../sim-platform}", "enclave: {backend: snp, sim_dir: x}", "enclave.sim_dir", "unknown field 'sim_dir'"),
    ("enclave: {backend: sim, sim_dir: ../sim-platform}",
     "enclave: {backend: sim, sim_dir: ../sim-platform, intel_collateral: no-such-dir}", "enclave.intel_collateral",
     "expected a directory of Intel collateral"),
    ("poll_interval: 0.5 ", "poll_interval: -1 ", "poll_interval", "expected a number from 0.05 to 3600"),
    ("poll_wait: 5 ", "poll_wait: 60 ", "poll_wait", "expected a number from 0 to 20"),
    ("tls: {ca: ../pki/ca.pem, cert: ../pki/bank.pem, key: ../pki/bank.key}", "tls: {ca: ../pki/ca.pem, cert: ../pki/bank.pem}",
     "tls.key", "missing required field 'key'"),
    ("  analysts: [analyst] ", "  analysts: [bank] ", "policy.analysts[0]", "'bank' is a data member, expected a analyst member"),
    ("  functions: [psi, aggregate, train, predict]", "  functions: [psi, sql]", "policy.functions[1]", "'sql' is not one of"),
    ("    customers: [customer_id, age, income, region, defaulted]", "    customers: [customer_id, ssn]",
     "policy.tables.customers[1]", "column 'ssn' is not in the published catalog"),
    ("    customers: [customer_id, age, income, region, defaulted]", "    customers: [customer_id]\n    loans: [id]",
     "policy.tables.loans", "table 'loans' has no source"),
    ("  min_group_size: 10 ", "  min_group_size: 0 ", "policy.min_group_size", "expected an integer from 1 to 1000000"),
    ("  recipients: [analyst, bank, telco, insurer] ", "  recipients: [analyst, bank, telco, eve] ", "policy.recipients[3]",
     "'eve' is not a member"),
    ("  id_recipients: [bank] ", "  id_recipients: [compute-1] ", "policy.id_recipients[0]", "is not in the recipients"),
    ("recipients: [analyst, bank, telco, insurer]}", "recipients: [analyst, compute-1]}", "policy.auto_approve[0].recipients[1]",
     "is not in the policy recipients"),
    ("release_kinds: [size, aggregate, model, metrics]", "release_kinds: [Model]", "policy.auto_approve[0].release_kinds[0]",
     "is not a release kind"),
    ("functions: [psi, aggregate, train],", "functions: [psi], analyst: x,", "policy.auto_approve[0].analyst", "unknown field 'analyst'"),
    ("compute_attestation: {allow_simulated: true, measurements: [", "compute_attestation: {allow_simulated: true, max_vmpl: 9, measurements: [",
     "policy.compute_attestation.max_vmpl", "expected an integer 0..3"),
    ("compute_attestation: {allow_simulated: true, measurements: [" + MEASUREMENT + "]}", "compute_attestation: {allow_simulated: true}",
     "policy.compute_attestation.measurements", "expected at least one pinned enclave measurement"),
    ("compute_attestation: {allow_simulated: true, measurements: [" + MEASUREMENT + "]}", "compute_attestation: {measurements: []}",
     "policy.compute_attestation.measurements", "expected at least one pinned enclave measurement"),
])
def test_bad_data_node_field_named(sandbox: Sandbox, old: str, new: str, field: str, words: str) -> None:
    path, line = edited(sandbox, "bank/node.yaml", old, new)
    error = refused(load_node_config, path)
    assert error.field == field and words in str(error), str(error)
    assert error.line == line + LINE_OFFSET.get(field, 0), str(error)


@pytest.mark.parametrize("old, new, field, words", [
    ('listen: "127.0.0.1:7443" ', "", "listen", "missing required field 'listen'"),
    ('listen: "127.0.0.1:7443" ', 'listen: "localhost" ', "listen", "is not an endpoint"),
    ("  data_attestation:", "  compute_attestation:", "policy.data_attestation", "missing required field 'data_attestation'"),
    ("  data_attestation:", "  analysts: [analyst]\n  data_attestation:", "policy.analysts", "unknown field 'analysts'"),
    ("poll_interval: 0.5", "poll_interval: 0.5\ntables: {}", "tables", "a compute node has no 'tables'"),
])
def test_bad_compute_node_field_named(sandbox: Sandbox, old: str, new: str, field: str, words: str) -> None:
    path, _ = edited(sandbox, "compute-1/node.yaml", old, new)
    error = refused(load_node_config, path)
    assert error.field == field and words in str(error), str(error)


def test_node_config_with_broken_consortium_names_the_consortium(sandbox: Sandbox) -> None:
    edited(sandbox, "consortium.yaml", "consortium: demo", "consortium: [demo")
    error = refused(load_node_config, sandbox.root / "bank" / "node.yaml")
    assert error.source == str(sandbox.root / "bank" / ".." / "consortium.yaml") and "invalid YAML" in str(error)


# --- analyst ------------------------------------------------------------------------------

def test_example_analyst_config_loads(sandbox: Sandbox) -> None:
    cfg: AnalystConfig = load_analyst_config(sandbox.root / "analyst" / "analyst.yaml")
    base = sandbox.root / "analyst"
    assert cfg.analyst == "analyst" and cfg.coordinator == "127.0.0.1:7400"
    assert cfg.keys_dir == base / "keys" and cfg.results_dir == base / "results"
    assert cfg.tls.cert == base / ".." / "pki" / "analyst.pem" and cfg.sim_dir == base / ".." / "sim-platform"


@pytest.mark.parametrize("old, new, field, words", [
    ("analyst: analyst ", "analyst: bank ", "analyst", "'bank' is not an analyst of consortium 'demo'"),
    ("keys: keys ", "key: keys ", "key", "unknown field 'key'"),
    ("results_dir: results ", "results_dir: [a] ", "results_dir", "expected a file or folder path, found a list"),
])
def test_bad_analyst_field_named(sandbox: Sandbox, old: str, new: str, field: str, words: str) -> None:
    path, line = edited(sandbox, "analyst/analyst.yaml", old, new)
    error = refused(load_analyst_config, path)
    assert error.field == field and error.line == line and words in str(error), str(error)


def test_coordinator_example_loads(sandbox: Sandbox) -> None:
    data = load_yaml(CONFIGS / "coordinator.example.yaml").data
    assert {"name", "listen", "consortium", "database", "tls", "audit_key"} <= set(data)
    coordinator_config = pytest.importorskip("teenet.coordinator.config",
                                             reason="the coordinator's config parser is not installed")
    path = sandbox.write("coordinator/coordinator.yaml", (CONFIGS / "coordinator.example.yaml").read_text())
    cfg = coordinator_config.load_coordinator_config(path)
    assert cfg.name == sandbox.consortium.coordinator_name and cfg.consortium == path.parent / ".." / "consortium.yaml"
