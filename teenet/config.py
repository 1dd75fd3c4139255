"""The consortium file, node configs and analyst configs: strict, frozen, line-numbered errors.

A consortium file lists the members (role, public keys, a compute node's endpoint, a data
member's published catalog of table and column names) and how recipients check result
evidence. A node config says where a node's own things live (state, keys, TLS, tables)
and its owner's policy: who may ask for what, and per shared table its analysis rule
(`policy.analysis.<table>`, whose fields teenet.models.rules reads) and its privacy budget
(`policy.budget.<table>`). Relative paths resolve against the folder of the file naming them.
Loading checks everything that can be checked without the network, so a mistake surfaces
at start-up naming the file, line and field.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from teenet.attestation.policy import AllOf, policy_from_config
from teenet.errors import InputError
from teenet.identity import MemberPublicKeys, ed25519_public_from_b64, x25519_public_from_b64
from teenet.keyfiles import KEY_PROTECTION_METHODS, KeyProtectionSettings
from teenet.jobspec import COLUMN_NAME, FUNCTIONS, MEMBER_NAME, RELEASE_KIND, TABLE_NAME
from teenet.pki import TlsFiles
from teenet.yamlload import Located, clip_text, load_yaml

ROLES = ("data", "compute", "analyst")
NODE_ROLES = ("data", "compute")
ENCLAVE_BACKENDS = ("sim", "snp", "tdx", "sgx")
TABLE_FORMATS = ("csv", "parquet", "sqlite", "postgres")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_ENDPOINT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(?P<port>[0-9]{1,5})")

MAX_MEMBERS = 256
MAX_TABLES = 1024
MAX_COLUMNS = 4096
MAX_LIST = 256
DEFAULT_POLL_WAIT = 5.0  # seconds; see NodeConfig.poll_wait

_MEMBER_WHAT = "a member name (lowercase letter, then a-z 0-9 _ -; up to 63)"
_TABLE_WHAT = "a table name (letter or _, then letters, digits, _; up to 63)"
_COLUMN_WHAT = "a column name (letter or _, then letters, digits, _; up to 63)"


# --- consortium -------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """A consortium member: its role, public keys, and (compute) endpoint or (data) catalog."""

    name: str
    role: str
    keys: MemberPublicKeys
    endpoint: str | None = None
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Consortium:
    """Who is in the network and how to reach and check them."""

    name: str
    coordinator_name: str
    coordinator_endpoint: str
    attestation: Mapping[str, Any]
    members: Mapping[str, Member]
    source: str = ""
    # How many other members' cosignatures a log checkpoint needs to count as witnessed
    # (teenet/witness.py); 1 to the number of data and compute members less one.
    witness_quorum: int = 1
    # The coordinator's audit log key (`coordinator.audit_key`, optional): with it, members
    # witness the coordinator's log like a member's (teenet/witness.py); without, it is unwitnessed.
    coordinator_audit_key: Any = None

    def analysts(self) -> tuple[Member, ...]:
        return self.with_role("analyst")

    def with_role(self, role: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members.values() if m.role == role)

    def member(self, name: str, role: str | None = None) -> Member:
        """The named member (of `role`, when given), or InputError saying who exists."""
        found = self.members.get(name)
        if found is None:
            raise InputError(f"'{name}' is not a member of consortium '{self.name}' "
                             f"(members: {', '.join(sorted(self.members))})", source=self.source or None)
        if role is not None and found.role != role:
            raise InputError(f"'{name}' is a {found.role} member, expected a {role} member",
                             source=self.source or None)
        return found

    def result_policy(self) -> AllOf:
        """How a recipient checks the compute enclave's evidence on a result."""
        return policy_from_config(self.attestation, source=f"{self.source}: attestation")


def load_consortium(path: str | Path) -> Consortium:
    """Read and validate a consortium file."""
    doc = load_yaml(Path(path))
    f = doc.root().mapping(required=("consortium", "coordinator", "attestation", "members"),
                           optional=("witness_quorum",), what="a consortium mapping")
    name = f["consortium"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
    coord = f["coordinator"].mapping(required=("name", "endpoint"), optional=("audit_key",))
    coordinator_name = coord["name"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
    coordinator_endpoint = endpoint(coord["endpoint"])
    coordinator_audit_key = (_public_key(coord["audit_key"], ed25519_public_from_b64)
                             if "audit_key" in coord else None)
    attestation = attestation_section(f["attestation"])
    members: dict[str, Member] = {}
    seen_keys: dict[bytes, str] = {}
    entries = f["members"].entries(max_items=MAX_MEMBERS, what="a mapping of member name to member")
    if not entries:
        raise f["members"].error("a consortium needs at least one member")
    for member_name, node in entries.items():
        member = _member(member_name, node)
        if member_name == coordinator_name:
            # TLS names the coordinator by this name; a member of the same name could pose as it.
            raise coord["name"].error(f"'{member_name}' is also a member's name; the coordinator is not a member")
        for kind, raw in (("signing_key", member.keys.signing.public_bytes_raw()),
                          ("hpke_key", member.keys.hpke.public_bytes_raw())):
            if raw in seen_keys:
                # One key for two members would let one speak or read as the other.
                raise node.child(kind, None).error(f"the same key is already {seen_keys[raw]}'s")
            seen_keys[raw] = f"{member_name}.{kind}"
        members[member_name] = member
    if coordinator_audit_key is not None and coordinator_audit_key.public_bytes_raw() in seen_keys:
        # One log key for two owners would let one's checkpoints pass as the other's.
        raise coord["audit_key"].error(
            f"the same key is already {seen_keys[coordinator_audit_key.public_bytes_raw()]}'s")
    witnesses = sum(1 for m in members.values() if m.role in ("data", "compute"))
    quorum = (f["witness_quorum"].integer(minimum=1, maximum=max(1, witnesses - 1))
              if "witness_quorum" in f else 1)
    return Consortium(name=name, coordinator_name=coordinator_name, coordinator_endpoint=coordinator_endpoint,
                      attestation=attestation, members=MappingProxyType(members), source=doc.source,
                      witness_quorum=quorum, coordinator_audit_key=coordinator_audit_key)


def _member(name: str, node: Located) -> Member:
    if not MEMBER_NAME.fullmatch(name):
        raise node.error(f"'{clip_text(name)}' is not {_MEMBER_WHAT}")
    role_value = _choice_first(node, "role", ROLES)
    optional = {"data": ("tables",), "compute": (), "analyst": ()}.get(role_value, ())
    required = ("role", "signing_key", "hpke_key") + (("endpoint",) if role_value == "compute" else ())
    f = node.mapping(required=required, optional=optional, what="a member mapping")
    role = f["role"].string(choices=ROLES)
    keys = MemberPublicKeys(signing=_public_key(f["signing_key"], ed25519_public_from_b64),
                            hpke=_public_key(f["hpke_key"], x25519_public_from_b64))
    tables: dict[str, tuple[str, ...]] = {}
    if "tables" in f:
        for table, columns in f["tables"].entries(max_items=MAX_TABLES,
                                                  what="a mapping of table name to column names").items():
            if not TABLE_NAME.fullmatch(table):
                raise columns.error(f"'{clip_text(table)}' is not {_TABLE_WHAT}")
            tables[table] = columns.strings(pattern=COLUMN_NAME, what=_COLUMN_WHAT, min_items=1,
                                            max_items=MAX_COLUMNS)
    return Member(name=name, role=role, keys=keys,
                  endpoint=endpoint(f["endpoint"]) if "endpoint" in f else None,
                  tables=MappingProxyType(tables))


def _public_key(node: Located, parse: Any) -> Any:
    try:
        return parse(node.value, source="", field="")
    except InputError as exc:
        raise node.error(str(exc)) from None
    except ValueError:
        raise node.error("not a valid public key") from None


def endpoint(node: Located) -> str:
    """A "host:port" string (IPv6 hosts in brackets)."""
    value = node.string(what='an endpoint "host:port"', max_length=300)
    match = _ENDPOINT.fullmatch(value)
    if not match or not 1 <= int(match["port"]) <= 65535:
        raise node.error(f"'{clip_text(value)}' is not an endpoint \"host:port\" with a port from 1 to 65535")
    return value


def attestation_section(node: Located) -> Mapping[str, Any]:
    """An attestation policy section, checked now by building it with policy_from_config."""
    if not isinstance(node.value, dict):
        raise node._type_error("an attestation policy mapping")
    try:
        policy_from_config(node.value, source="")
    except InputError as exc:
        inner = node.child(exc.field, None) if exc.field else node
        message = str(exc)
        prefix = f"field '{exc.field}': "
        raise inner.error(message[len(prefix):] if message.startswith(prefix) else message) from None
    if not node.value.get("measurements"):
        # An empty allowlist accepts nothing; say so now rather than at the first job.
        raise node.child("measurements", None).error("expected at least one pinned enclave measurement "
                                                     "(the output of `teenet enclave measure`)")
    return MappingProxyType(copy.deepcopy(node.value))


# --- node -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableSource:
    """Where a data node reads one of its tables. `dsn_env` names an environment variable."""

    name: str
    format: str
    path: Path | None = None
    query: str | None = None
    dsn_env: str | None = None


@dataclass(frozen=True)
class EnclaveConfig:
    """Which TEE backend the node's enclave uses; `sim_dir` holds the simulated platform."""

    backend: str
    sim_dir: Path | None = None
    # A directory of Intel PCS collateral (attestation.evidence.IntelCollateral): with it,
    # TDX and SGX peers are verified with their TCB status, for `tcb_status` policies.
    intel_collateral: Path | None = None


@dataclass(frozen=True)
class AutoApproveRule:
    """A job inside all of these lists is approved without an operator."""

    analysts: tuple[str, ...]
    functions: tuple[str, ...]
    release_kinds: tuple[str, ...]
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Budget:
    """A table's privacy budget: the most epsilon and delta all approved jobs together may
    spend on it (sequential composition). The operator may raise it (`teenet budget raise`);
    raises are kept in the node's store, not here. (0, 0), the default, admits no DP spend."""

    epsilon: float = 0.0
    delta: float = 0.0


@dataclass(frozen=True)
class OwnerPolicy:
    """A data owner's rules (data nodes), or which data enclaves a compute node trusts.

    On a data node every field but `data_attestation` is used; a compute node has
    `data_attestation` and, optionally, `compute_attestation` (which compute enclaves it
    takes for its peers). Attestation sections are raw mappings for policy_from_config.
    """

    analysts: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    min_group_size: int = 10
    recipients: tuple[str, ...] = ()
    id_recipients: tuple[str, ...] = ()
    auto_approve: tuple[AutoApproveRule, ...] = ()
    approval_validity: int = 86_400  # seconds an approval holds (its not_after)
    compute_attestation: Mapping[str, Any] | None = None
    data_attestation: Mapping[str, Any] | None = None
    # Per shared table: its analysis rule (teenet.models.rules.AnalysisRule, what jobs may
    # compute and release from it; the default rule when the policy has none for it), its
    # privacy budget, and where the rule is written ("bank.yaml:42 policy.analysis.customers"),
    # so the operator sees which rule matched.
    analysis: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    budgets: Mapping[str, Budget] = field(default_factory=lambda: MappingProxyType({}))
    rule_sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def compute_policy(self) -> AllOf:
        """Which compute enclaves this owner trusts (data nodes)."""
        if self.compute_attestation is None:
            raise InputError("this policy has no compute_attestation section")
        return policy_from_config(self.compute_attestation, source="policy.compute_attestation")

    def data_policy(self) -> AllOf:
        """Which data enclaves this compute node accepts keys from."""
        if self.data_attestation is None:
            raise InputError("this policy has no data_attestation section")
        return policy_from_config(self.data_attestation, source="policy.data_attestation")


@dataclass(frozen=True)
class NodeConfig:
    """A data or compute node's configuration, with its consortium loaded and cross-checked."""

    node: str
    role: str
    consortium_path: Path
    consortium: Consortium
    coordinator: str
    state_dir: Path
    keys_dir: Path
    tls: TlsFiles
    enclave: EnclaveConfig
    listen: str | None
    poll_interval: float
    tables: Mapping[str, TableSource]
    policy: OwnerPolicy
    source: str = ""
    # Seconds a poll may wait at the coordinator for new work (a long poll); 0 = plain polling
    # every poll_interval.
    poll_wait: float = DEFAULT_POLL_WAIT
    console: "ConsoleConfig | None" = None  # the web console; off unless configured
    log_format: str = "text"                 # text | json (one JSON object per log line)
    # How the member keys and the TLS key are protected at rest (see key_protection_section).
    key_protection: KeyProtectionSettings = KeyProtectionSettings()
    # Compute nodes: the smallest size bucket a sealed result's content is padded to (bytes, a
    # power of two); see teenet/release.py.
    result_pad_floor: int = 4096
    # Compute nodes: lead a cluster of attested workers (teenet.cluster.config.ClusterSection).
    cluster: Any = None

    @property
    def member(self) -> Member:
        return self.consortium.members[self.node]


def load_node_config(path: str | Path) -> NodeConfig:
    """Read a node config, load its consortium, and check the two agree."""
    path = Path(path)
    doc = load_yaml(path)
    base = path.resolve().parent
    root = doc.root()
    f = root.mapping(required=("node", "role", "consortium", "state_dir", "keys", "tls", "enclave", "policy"),
                     optional=("coordinator", "poll_interval", "poll_wait", "listen", "tables", "key_protection",
                               "result_pad_floor", "console", "log_format", "cluster"),
                     what="a node config mapping")
    node = f["node"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
    role = f["role"].string(choices=NODE_ROLES)
    consortium_path = resolve_path(f["consortium"], base)
    consortium = load_consortium(consortium_path)
    member = consortium.members.get(node)
    if member is None:
        raise f["node"].error(f"'{node}' is not a member of consortium '{consortium.name}' ({consortium_path})")
    if member.role != role:
        raise f["role"].error(f"the consortium says '{node}' is a {member.role} member, not {role}")
    # Data nodes read tables and never listen (outbound only); compute nodes the reverse.
    needed, refused = ("tables", "listen") if role == "data" else ("listen", "tables")
    if needed not in f:
        raise root.child(needed, None).error(f"missing required field '{needed}' (a {role} node needs it)")
    if refused in f:
        raise f[refused].error(f"a {role} node has no '{refused}'")
    if "cluster" in f and role != "compute":
        raise f["cluster"].error("only a compute node can lead a cluster; a data node has no 'cluster'")
    if "result_pad_floor" in f and role != "compute":
        raise f["result_pad_floor"].error("only a compute node seals results; a data node has no 'result_pad_floor'")
    pad_floor = 4096
    if "result_pad_floor" in f:
        from teenet.release import check_pad_floor

        try:
            pad_floor = check_pad_floor(f["result_pad_floor"].integer(minimum=0, maximum=1 << 40))
        except InputError as exc:
            raise f["result_pad_floor"].error(str(exc).split(": ", 1)[-1]) from None
    coordinator = endpoint(f["coordinator"]) if "coordinator" in f else consortium.coordinator_endpoint
    tables = _table_sources(f["tables"], base) if "tables" in f else MappingProxyType({})
    if role == "data":
        unserved = sorted(set(member.tables) - set(tables))
        if unserved:
            raise f["tables"].error(f"table(s) {', '.join(unserved)} are published in the consortium catalog "
                                    "but have no source here")
        policy = _owner_policy(f["policy"], consortium, member, tables)
    else:
        pf = f["policy"].mapping(required=("data_attestation",), optional=("compute_attestation",),
                                 what="a compute policy mapping")
        policy = OwnerPolicy(
            data_attestation=attestation_section(pf["data_attestation"]),
            compute_attestation=(attestation_section(pf["compute_attestation"])
                                 if "compute_attestation" in pf else None))
    return NodeConfig(
        node=node, role=role, consortium_path=consortium_path, consortium=consortium, coordinator=coordinator,
        state_dir=resolve_path(f["state_dir"], base), keys_dir=resolve_path(f["keys"], base), tls=tls_files(f["tls"], base),
        enclave=_enclave(f["enclave"], base), listen=endpoint(f["listen"]) if "listen" in f else None,
        poll_interval=(f["poll_interval"].number(minimum=0.05, maximum=3600) if "poll_interval" in f else 1.0),
        poll_wait=(f["poll_wait"].number(minimum=0, maximum=20) if "poll_wait" in f else DEFAULT_POLL_WAIT),
        tables=tables, policy=policy, source=doc.source, result_pad_floor=pad_floor,
        console=(console_section(f["console"], base, resolve_path(f["keys"], base) / CONSOLE_TOKEN_FILE)
                 if "console" in f else None),
        log_format=log_format_field(f.get("log_format")),
        key_protection=key_protection_section(f.get("key_protection"), base, source=doc.source),
        cluster=_cluster_section(f["cluster"]) if "cluster" in f else None,
    )


def _cluster_section(node: Located) -> Any:
    from teenet.cluster.config import cluster_section  # docs/deploy-cluster.md

    return cluster_section(node)


def _choice_first(node: Located, key: str, choices: tuple[str, ...]) -> str | None:
    """Check the field that decides which other fields are allowed before checking those."""
    if isinstance(node.value, dict) and key in node.value:
        return node.child(key, node.value[key]).string(choices=choices)
    return None


def resolve_path(node: Located, base: Path) -> Path:
    """A path field, relative paths taken against the config file's folder."""
    value = node.string(what="a file or folder path")
    if "\x00" in value:
        raise node.error("a path may not contain a NUL character")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def tls_files(node: Located, base: Path) -> TlsFiles:
    f = node.mapping(required=("ca", "cert", "key"), what="a mapping {ca, cert, key}")
    return TlsFiles(ca=resolve_path(f["ca"], base), cert=resolve_path(f["cert"], base), key=resolve_path(f["key"], base))


# --- key protection ------------------------------------------------------------------------

def key_protection_section(node: Located | None, base: Path, *, source: str,
                           methods: tuple[str, ...] = KEY_PROTECTION_METHODS) -> KeyProtectionSettings:
    """`key_protection: {method: none|passphrase|enclave, passphrase_file | passphrase_env}`.

    Absent means `none`. `passphrase` takes exactly one of a file path or the name of an
    environment variable (the config never holds the passphrase itself).
    """
    if node is None:
        return KeyProtectionSettings(source=source)
    method_value = _choice_first(node, "method", methods)
    optional = ("passphrase_file", "passphrase_env") if method_value == "passphrase" else ()
    f = node.mapping(required=("method",), optional=optional,
                     what="a mapping {method, passphrase_file or passphrase_env}")
    method = f["method"].string(choices=methods)
    if method == "passphrase" and len(f) != 2:
        raise node.error("method 'passphrase' needs exactly one of passphrase_file (a file of mode 0600) "
                         "or passphrase_env (an environment variable name)")
    return KeyProtectionSettings(
        method=method,
        passphrase_file=resolve_path(f["passphrase_file"], base) if "passphrase_file" in f else None,
        passphrase_env=(f["passphrase_env"].string(pattern=ENV_NAME, what="an environment variable name (A-Z, 0-9, _)")
                        if "passphrase_env" in f else None),
        source=source)


def _enclave(node: Located, base: Path) -> EnclaveConfig:
    sim = _choice_first(node, "backend", ENCLAVE_BACKENDS) == "sim"
    f = node.mapping(required=("backend",) + (("sim_dir",) if sim else ()), optional=("intel_collateral",),
                     what="a mapping {backend, sim_dir, intel_collateral}")
    backend = f["backend"].string(choices=ENCLAVE_BACKENDS)
    collateral = resolve_path(f["intel_collateral"], base) if "intel_collateral" in f else None
    if collateral is not None and not collateral.is_dir():
        raise f["intel_collateral"].error(f"expected a directory of Intel collateral, found no directory at "
                                          f"{collateral}")
    return EnclaveConfig(backend=backend, sim_dir=resolve_path(f["sim_dir"], base) if sim else None,
                         intel_collateral=collateral)


def _table_sources(node: Located, base: Path) -> Mapping[str, TableSource]:
    out: dict[str, TableSource] = {}
    for name, entry in node.entries(max_items=MAX_TABLES, what="a mapping of table name to source").items():
        if not TABLE_NAME.fullmatch(name):
            raise entry.error(f"'{clip_text(name)}' is not {_TABLE_WHAT}")
        fmt_value = _choice_first(entry, "format", TABLE_FORMATS)
        needs = {"csv": ("path",), "parquet": ("path",), "sqlite": ("path", "query"),
                 "postgres": ("dsn_env", "query")}.get(fmt_value, ())
        f = entry.mapping(required=("format",) + needs, what="a table source mapping {format, path, query, dsn_env}")
        fmt = f["format"].string(choices=TABLE_FORMATS)
        out[name] = TableSource(
            name=name, format=fmt,
            path=resolve_path(f["path"], base) if "path" in f else None,
            query=f["query"].string(what="an SQL query", max_length=65536) if "query" in f else None,
            # The DSN holds a password: the config names the variable, never the value.
            dsn_env=(f["dsn_env"].string(pattern=ENV_NAME, what="an environment variable name (A-Z, 0-9, _)")
                     if "dsn_env" in f else None))
    return MappingProxyType(out)


def _owner_policy(node: Located, consortium: Consortium, member: Member,
                  sources: Mapping[str, TableSource]) -> OwnerPolicy:
    f = node.mapping(required=("analysts", "functions", "tables", "recipients", "compute_attestation"),
                     optional=("min_group_size", "id_recipients", "auto_approve", "approval_validity", "analysis",
                               "budget"),
                     what="an owner policy mapping")
    analysts = _members(f["analysts"], consortium, role="analyst")
    functions = _functions(f["functions"], FUNCTIONS)
    tables: dict[str, tuple[str, ...]] = {}
    for table, columns in f["tables"].entries(max_items=MAX_TABLES,
                                              what="a mapping of table name to shared columns").items():
        if table not in sources:
            raise columns.error(f"table '{clip_text(table)}' has no source under 'tables'")
        if isinstance(columns.value, dict):
            raise columns.error("expected a list of the shared columns; a table's analysis rule goes under "
                                f"'policy.analysis.{clip_text(table)}' and its budget under "
                                f"'policy.budget.{clip_text(table)}'")
        shared = columns.strings(pattern=COLUMN_NAME, what=_COLUMN_WHAT, max_items=MAX_COLUMNS)
        published = member.tables.get(table)
        if published is not None:
            for j, column in enumerate(shared):
                if column not in published:
                    raise columns.child(j, column).error(f"column '{column}' is not in the published catalog of "
                                                         f"'{table}' ({', '.join(published)})")
        tables[table] = shared
    analysis, rule_sources = _analysis_rules(f.get("analysis"), f["tables"], tables, member.name)
    budgets: dict[str, Budget] = {t: Budget() for t in tables}
    if "budget" in f:
        for table, entry in f["budget"].entries(max_items=MAX_TABLES,
                                                what="a mapping of table name to its budget").items():
            if table not in tables:
                raise entry.error(f"table '{clip_text(table)}' is not shared under 'policy.tables'")
            budgets[table] = _budget(entry)
    recipients = _members(f["recipients"], consortium)
    id_recipients = _members(f["id_recipients"], consortium) if "id_recipients" in f else ()
    _within(f.get("id_recipients"), id_recipients, recipients, "recipients")
    rules = []
    if "auto_approve" in f:
        for item in f["auto_approve"].sequence(max_items=MAX_LIST, what="a list of auto-approve rules"):
            rf = item.mapping(required=("analysts", "functions", "release_kinds", "recipients"),
                              what="an auto-approve rule mapping")
            rule = AutoApproveRule(
                analysts=_members(rf["analysts"], consortium, role="analyst"),
                functions=_functions(rf["functions"], functions),
                release_kinds=rf["release_kinds"].strings(pattern=RELEASE_KIND, what="a release kind",
                                                          min_items=1, max_items=MAX_LIST),
                recipients=_members(rf["recipients"], consortium))
            _within(rf["analysts"], rule.analysts, analysts, "policy analysts")
            _within(rf["recipients"], rule.recipients, recipients, "policy recipients")
            rules.append(rule)
    return OwnerPolicy(
        analysts=analysts, functions=functions, tables=MappingProxyType(tables),
        min_group_size=(f["min_group_size"].integer(minimum=1, maximum=1_000_000)
                        if "min_group_size" in f else 10),
        recipients=recipients, id_recipients=id_recipients, auto_approve=tuple(rules),
        approval_validity=(f["approval_validity"].integer(minimum=1, maximum=366 * 86_400)
                           if "approval_validity" in f else 86_400),
        compute_attestation=attestation_section(f["compute_attestation"]),
        analysis=MappingProxyType(analysis), budgets=MappingProxyType(budgets),
        rule_sources=MappingProxyType(rule_sources))


def _analysis_rules(node: Located | None, tables_node: Located, tables: Mapping[str, tuple[str, ...]],
                    party: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Each shared table's analysis rule (`policy.analysis.<table>`, read by
    teenet.models.rules, the one reader of its fields; a table without one gets the default
    rule), and where each is written. An error names this file, the field's line and the field."""
    from teenet.models.rules import AnalysisRule

    given = node.entries(max_items=MAX_TABLES, what="a mapping of table name to its analysis rule") \
        if node is not None else {}
    rules: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for table, entry in given.items():
        if table not in tables:
            raise entry.error(f"table '{clip_text(table)}' is not shared under 'policy.tables'")
    for table in tables:
        entry = given.get(table)
        where = entry if entry is not None else tables_node.child(table, None)
        name = Path(where.doc.source).name if where.doc.source else "policy"
        sources[table] = (f"{name}:{where.line} " if where.line else f"{name} ") + \
            (where.field if entry is not None else f"{where.field} (the default rule)")
        if entry is None:
            rules[table] = AnalysisRule.default(table, party)
            continue
        try:
            rules[table] = AnalysisRule.from_config(table, entry.value, entry.field, party=party)
        except InputError as exc:
            located = entry
            if exc.field and exc.field.startswith(entry.field):
                located = Located(entry.doc, tuple(_field_parts(exc.field)), None)
            message = str(exc)
            prefix = f"field '{exc.field}': "
            message = message.split(prefix, 1)[1] if prefix in message else message
            unknown = re.match(r"unknown parameter\(s\): ([^,\s]+)", message)
            if unknown:  # point at the misspelt field itself, on its own line
                located = Located(entry.doc, located.path + (unknown[1],), None)
            raise located.error(message) from None
    return rules, sources


def _field_parts(dotted: str) -> list[str | int]:
    """`a.b[2].c` -> ["a", "b", 2, "c"] (field paths as InputError names them)."""
    parts: list[str | int] = []
    for piece in dotted.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[[0-9]+\])*)", piece)
        if not m:
            parts.append(piece)
            continue
        if m[1]:
            parts.append(m[1])
        parts += [int(i) for i in re.findall(r"\[([0-9]+)\]", m[2])]
    return parts


def _budget(node: Located) -> Budget:
    f = node.mapping(required=("epsilon",), optional=("delta",), what="a budget mapping {epsilon, delta}")
    for key, value in f.items():
        if isinstance(value.value, str) and re.fullmatch(r"[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+", value.value):
            raise value.error(f"expected a number, found string '{clip_text(value.value)}' (YAML reads "
                              f"{value.value} as text; write it with a decimal point, e.g. 1.0e-6)")
    epsilon = f["epsilon"].number(minimum=0, maximum=1_000_000)
    delta = f["delta"].number(minimum=0, maximum=0.5) if "delta" in f else 0.0
    return Budget(float(epsilon), float(delta))


def _members(node: Located, consortium: Consortium, *, role: str | None = None) -> tuple[str, ...]:
    names = node.strings(pattern=MEMBER_NAME, what=_MEMBER_WHAT, max_items=MAX_LIST)
    for j, name in enumerate(names):
        found = consortium.members.get(name)
        if found is None:
            raise node.child(j, name).error(f"'{name}' is not a member of consortium '{consortium.name}'")
        if role is not None and found.role != role:
            raise node.child(j, name).error(f"'{name}' is a {found.role} member, expected a {role} member")
    return names


def _functions(node: Located, allowed: Iterable[str]) -> tuple[str, ...]:
    allowed = tuple(allowed)
    names = node.strings(what="a function name", max_items=len(FUNCTIONS))
    for j, name in enumerate(names):
        if name not in allowed:
            raise node.child(j, name).error(f"'{clip_text(name)}' is not one of: {', '.join(allowed)}")
    return names


def _within(node: Located | None, names: tuple[str, ...], allowed: tuple[str, ...], what: str) -> None:
    for j, name in enumerate(names):
        if name not in allowed and node is not None:
            raise node.child(j, name).error(f"'{name}' is not in the {what} ({', '.join(allowed) or 'none'})")


# --- console and log format (node and coordinator) ----------------------------------------

LOG_FORMATS = ("text", "json")
DEFAULT_METRICS_PATH = "/metrics"
CONSOLE_TOKEN_FILE = "console.token"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]{0,127}")


@dataclass(frozen=True)
class ConsoleConfig:
    """Where a node's or coordinator's web console listens and how operators prove who they are.

    Off unless the config has a `console:` section. On loopback it may serve plain HTTP; on
    any other address it needs `tls: {cert, key}` (refused at load time otherwise). The
    operator token lives in `token_file` (default: `console.token` next to the node's keys,
    or in the coordinator's state folder), made with mode 0600 when absent.
    """

    listen: str
    token_file: Path
    metrics_path: str = DEFAULT_METRICS_PATH
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # With TLS: operators holding a certificate from this CA log in as its common name, no
    # token needed. A CA of the owner's own operators, not the consortium's (that one
    # certifies every member).
    client_ca: Path | None = None

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def loopback(self) -> bool:
        return self.listen.rsplit(":", 1)[0] in _LOOPBACK_HOSTS

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.listen}/"


def console_section(node: Located, base: Path, default_token_file: Path) -> ConsoleConfig:
    """The `console:` section: {listen, token_file, metrics_path, tls: {cert, key, client_ca}}."""
    f = node.mapping(required=("listen",), optional=("token_file", "metrics_path", "tls"),
                     what="a console mapping {listen, token_file, metrics_path, tls}")
    listen = endpoint(f["listen"])
    cert = key = client_ca = None
    if "tls" in f:
        tf = f["tls"].mapping(required=("cert", "key"), optional=("client_ca",), what="a mapping {cert, key, client_ca}")
        cert, key = resolve_path(tf["cert"], base), resolve_path(tf["key"], base)
        client_ca = resolve_path(tf["client_ca"], base) if "client_ca" in tf else None
    metrics_path = DEFAULT_METRICS_PATH
    if "metrics_path" in f:
        metrics_path = f["metrics_path"].string(pattern=_URL_PATH, what="a URL path like /metrics")
    config = ConsoleConfig(listen=listen, token_file=(resolve_path(f["token_file"], base) if "token_file" in f
                                                      else default_token_file),
                           metrics_path=metrics_path, tls_cert=cert, tls_key=key, client_ca=client_ca)
    if not config.loopback and not config.tls:
        # Anyone on the network could read the session cookie and the token off the wire.
        raise f["listen"].error(f"the console listens on {listen}, beyond loopback: add tls: {{cert, key}}")
    return config


def log_format_field(node: Located | None) -> str:
    """`log_format: text | json` (default text)."""
    return node.string(choices=LOG_FORMATS) if node is not None else "text"


# --- analyst ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnalystConfig:
    """Where an analyst's CLI finds its keys, TLS files, consortium and coordinator.

    `sim_dir` (sandbox only) is the simulated platform whose software root the analyst
    pins to check simulated evidence on results.
    """

    analyst: str
    consortium_path: Path
    consortium: Consortium
    coordinator: str
    keys_dir: Path
    tls: TlsFiles
    results_dir: Path
    sim_dir: Path | None = None
    source: str = ""


def load_analyst_config(path: str | Path) -> AnalystConfig:
    path = Path(path)
    doc = load_yaml(path)
    base = path.resolve().parent
    f = doc.root().mapping(required=("analyst", "consortium", "keys", "tls"),
                           optional=("coordinator", "results_dir", "sim_dir"), what="an analyst config mapping")
    analyst = f["analyst"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
    consortium_path = resolve_path(f["consortium"], base)
    consortium = load_consortium(consortium_path)
    found = consortium.members.get(analyst)
    if found is None or found.role != "analyst":
        raise f["analyst"].error(f"'{analyst}' is not an analyst of consortium '{consortium.name}'")
    return AnalystConfig(
        analyst=analyst, consortium_path=consortium_path, consortium=consortium,
        coordinator=endpoint(f["coordinator"]) if "coordinator" in f else consortium.coordinator_endpoint,
        keys_dir=resolve_path(f["keys"], base), tls=tls_files(f["tls"], base),
        results_dir=resolve_path(f["results_dir"], base) if "results_dir" in f else base / "results",
        sim_dir=resolve_path(f["sim_dir"], base) if "sim_dir" in f else None,
        source=doc.source)
