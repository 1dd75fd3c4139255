"""`teenet sandbox init|up|status|down`: a whole consortium on one machine, on loopback.

`init` writes a development PKI, member keys, a simulated TEE platform, a consortium file,
configs for three data nodes (bank, telco, insurer), one compute node and a coordinator,
synthetic tables with overlapping customers (or only the parties' own CSV/Parquet files,
with jobs made from their columns: cli/sandbox_jobs.py), and example jobs. `up` starts
each daemon that is not running as its own process, `status` says which are up, `down`
stops them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer
import yaml

from teenet.cli.output import JSON_HELP, emit
from teenet.cli.sandbox_policy import sandbox_rules
from teenet.errors import InputError, TeenetError

app = typer.Typer(no_args_is_help=True)

DATA_PARTIES = ("bank", "telco", "insurer")
MANIFEST_FILE = "sandbox.json"


def compute_names(count: int) -> list[str]:
    return [f"compute-{i}" for i in range(1, count + 1)]


def worker_names(leader: str, count: int) -> list[str]:
    """The compute-worker processes of a cluster led by `leader` (docs/deploy-cluster.md)."""
    return [f"{leader}-w{i}" for i in range(1, count + 1)]
ANALYST = "analyst"
COORDINATOR = "coordinator"
PROCESS_FILE = "run/processes.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dump(path: Path, data: dict, header: str = "") -> None:
    from teenet.yamlload import dump_yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(data, header=header))


def _own_tables(specs: list[str]) -> dict[str, dict[str, Path]]:
    """Parse --data party:table=path options (CSV or Parquet)."""
    out: dict[str, dict[str, Path]] = {}
    for spec in specs:
        try:
            left, path = spec.split("=", 1)
            party, table = left.split(":", 1)
        except ValueError:
            raise InputError(f"--data {spec!r}: expected PARTY:TABLE=PATH, e.g. bank:customers=./customers.csv") from None
        if party not in DATA_PARTIES:
            raise InputError(f"--data {spec!r}: party must be one of {', '.join(DATA_PARTIES)}")
        p = Path(path).expanduser().resolve()
        if not p.is_file() or p.suffix.lower() not in (".csv", ".parquet"):
            raise InputError(f"--data {spec!r}: expected an existing .csv or .parquet file", source=str(p))
        out.setdefault(party, {})[table] = p
    return out


def init_sandbox(directory: Path, *, rows: int = 20_000, own: dict[str, dict[str, Path]] | None = None,
                 force: bool = False, computes: int = 1, jobs_from_data: bool = True, workers: int = 0) -> dict:
    """Create a sandbox consortium in `directory`; returns a summary.

    With `own` tables, the consortium's data parties are the parties that gave files and
    nothing synthetic is written; the jobs are made from the files' own columns
    (cli/sandbox_jobs.py). A failure leaves no half-made folder behind: a folder this
    call created is removed again. `jobs_from_data=False` (the benchmark, which writes its
    own jobs) skips reading the files and writes no example jobs for them. With `workers`,
    compute-1 leads a cluster of that many compute-worker processes (simulated attestation).
    """
    directory = directory.resolve()
    if (directory / "consortium.yaml").exists() and not force:
        raise InputError(f"{directory} already holds a sandbox; use --force to replace it")
    if directory.exists() and not directory.is_dir():
        raise InputError("exists and is not a folder", source=str(directory))
    if not 1 <= computes <= 16:
        raise InputError(f"--computes must be 1..16, got {computes}")
    if not 0 <= workers <= 16:
        raise InputError(f"--workers must be 0..16, got {workers}")
    plan = None
    if own and not jobs_from_data:
        from teenet.cli.sandbox_jobs import JobPlan

        plan = JobPlan({}, [])
    elif own:
        from teenet.cli.sandbox_jobs import inspect_table, plan_jobs

        described = [inspect_table(party, table, path) for party in DATA_PARTIES
                     for table, path in own.get(party, {}).items()]
        plan = plan_jobs(described, ANALYST, compute_names(computes)[0])
    created = not directory.exists()
    try:
        return _init_sandbox(directory, rows=rows, own=own or {}, plan=plan, computes=computes, workers=workers)
    except BaseException:
        if created:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
        raise


def _init_sandbox(directory: Path, *, rows: int, own: dict[str, dict[str, Path]], plan, computes: int,
                  workers: int = 0) -> dict:
    from teenet.attestation.measure import enclave_manifest
    from teenet.attestation.sim import SimulatedPlatform
    from teenet.identity import MemberKeys
    from teenet.pki import DevPki
    from teenet.node.catalog import Catalog, CatalogTable

    directory.mkdir(parents=True, exist_ok=True)
    pki = DevPki.create(directory / "pki")
    SimulatedPlatform.load_or_create(directory / "sim-platform")
    measurement = enclave_manifest().measurement().hex()
    if own:  # the parties' own files only: no synthetic table nobody's job reads
        tables = {party: dict(own[party]) for party in DATA_PARTIES if party in own}
    else:
        from teenet.cli.sandbox_data import generate

        tables = generate(directory / "data", rows=rows)
    parties = tuple(tables)

    members: dict[str, dict] = {}
    keys: dict[str, MemberKeys] = {}
    compute_nodes = compute_names(computes)
    for name in (*parties, *compute_nodes, ANALYST):
        k = MemberKeys.generate()
        k.save(directory / "members" / name / "keys")
        keys[name] = k
        pki.issue(name)
    pki.issue(COORDINATOR)
    coordinator_port = _free_port()
    compute_ports = {name: _free_port() for name in compute_nodes}
    # Every daemon's web console, on loopback (its operator token: console.token by its keys).
    consoles = {name: {"listen": f"127.0.0.1:{_free_port()}"} for name in (*parties, *compute_nodes)}
    consoles[COORDINATOR] = {"listen": f"127.0.0.1:{_free_port()}", "token_file": "state/coordinator/console.token"}
    sim_attestation = {"allow_simulated": True, "measurements": [measurement]}

    for party in parties:
        catalog = Catalog({t: CatalogTable(t, p.suffix.lstrip(".").lower(), p, None, None)
                           for t, p in tables[party].items()})
        members[party] = {"role": "data", **keys[party].public().to_config(),
                          "tables": {t: catalog.columns(t) for t in tables[party]}}
    for name in compute_nodes:
        members[name] = {"role": "compute", "endpoint": f"127.0.0.1:{compute_ports[name]}",
                         **keys[name].public().to_config()}
    members[ANALYST] = {"role": "analyst", **keys[ANALYST].public().to_config()}
    # The coordinator's audit key, made now so the consortium file can name it: the members
    # then witness the coordinator's log too (teenet/witness.py).
    from teenet.audit import load_audit_key
    from teenet.identity import b64_raw

    (directory / "state" / COORDINATOR).mkdir(parents=True, exist_ok=True, mode=0o700)
    coordinator_audit = load_audit_key(directory / "state" / COORDINATOR / "audit.key").public_key()
    _dump(directory / "consortium.yaml", {
        "consortium": "sandbox",
        "coordinator": {"name": COORDINATOR, "endpoint": f"127.0.0.1:{coordinator_port}",
                        "audit_key": b64_raw(coordinator_audit)},
        "attestation": sim_attestation,
        "members": members,
    }, "# A sandbox consortium made by `teenet sandbox init`. SIMULATED attestation: development only.\n")

    def tls(name: str) -> dict:
        return {"ca": "pki/ca.pem", "cert": f"pki/{name}.pem", "key": f"pki/{name}.key"}

    everyone = [*parties, ANALYST]
    for party in parties:
        cols = members[party]["tables"]
        _dump(directory / f"{party}.yaml", {
            "node": party, "role": "data", "consortium": "consortium.yaml",
            "state_dir": f"state/{party}", "keys": f"members/{party}/keys", "tls": tls(party),
            "enclave": {"backend": "sim", "sim_dir": "sim-platform"},
            "poll_interval": 0.2, "console": consoles[party],
            "tables": {t: {"format": p.suffix.lstrip(".").lower(), "path": str(p)} for t, p in tables[party].items()},
            "policy": {
                "analysts": [ANALYST], "functions": ["psi", "aggregate", "train", "predict"],
                "tables": cols, "min_group_size": 10, "recipients": everyone, "id_recipients": [party],
                "auto_approve": [{"analysts": [ANALYST],
                                  "functions": ["psi", "aggregate", "train"] if party != "insurer" else ["psi", "aggregate"],
                                  "release_kinds": ["size", "sums", "aggregate", "model", "metrics"],
                                  "recipients": everyone}],
                "compute_attestation": sim_attestation,
                **sandbox_rules(party, cols, own=list((own or {}).get(party, {}))),
            },
        }, f"# {party}'s node. Jobs outside its auto-approve rules wait for `teenet approvals approve`.\n")
    cluster_workers = worker_names(compute_nodes[0], workers)
    admission = f"127.0.0.1:{_free_port()}"
    for name in compute_nodes:
        _dump(directory / f"{name}.yaml", {
            "node": name, "role": "compute", "consortium": "consortium.yaml",
            "state_dir": f"state/{name}", "keys": f"members/{name}/keys", "tls": tls(name),
            "enclave": {"backend": "sim", "sim_dir": "sim-platform"},
            "listen": f"127.0.0.1:{compute_ports[name]}", "poll_interval": 0.2, "console": consoles[name],
            "policy": {"data_attestation": sim_attestation},
            **({"cluster": {"workers": workers, "admission_listen": admission, "allow_simulated": True}}
               if workers and name == compute_nodes[0] else {}),
        })
    for name in cluster_workers:
        _dump(directory / f"{name}.yaml", {
            "node": name, "role": "compute-worker", "leader": admission, "listen": "127.0.0.1",
            "enclave": {"backend": "sim", "sim_dir": "sim-platform"}, "allow_simulated": True,
        }, f"# A worker of {compute_nodes[0]}'s cluster. SIMULATED attestation: development only.\n")
    _dump(directory / "coordinator.yaml", {
        "name": COORDINATOR, "listen": f"127.0.0.1:{coordinator_port}", "consortium": "consortium.yaml",
        "database": "state/coordinator/coordinator.db", "tls": tls(COORDINATOR),
        "audit_key": "state/coordinator/audit.key", "console": consoles[COORDINATOR],
    })
    _dump(directory / "analyst.yaml", {
        "analyst": ANALYST, "consortium": "consortium.yaml", "keys": f"members/{ANALYST}/keys",
        "tls": tls(ANALYST), "sim_dir": "sim-platform",
    })
    if plan is None:
        _write_jobs(directory / "jobs", tables)
        jobs, notes = ["psi-overlap", "spend-by-region", "default-risk"], []
    else:
        (directory / "jobs").mkdir(parents=True, exist_ok=True)
        for name, text in plan.files.items():
            (directory / "jobs" / f"{name}.yaml").write_text(text)
        jobs, notes = list(plan.files), plan.notes
    (directory / MANIFEST_FILE).write_text(json.dumps({"parties": list(parties), "computes": compute_nodes,
                                                       "workers": cluster_workers}))
    return {"directory": str(directory), "measurement": measurement, "coordinator": f"127.0.0.1:{coordinator_port}",
            "computes": {n: f"127.0.0.1:{p}" for n, p in compute_ports.items()}, "parties": list(parties),
            "workers": cluster_workers,
            "tables": {p: {t: str(x) for t, x in ts.items()} for p, ts in tables.items()},
            "jobs": [f"jobs/{j}.yaml" for j in jobs], "notes": notes}


def _write_jobs(d: Path, tables: dict[str, dict[str, Path]]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "psi-overlap.yaml").write_text(
        "# How many customers do the bank, the telco and the insurer share? Only the count leaves.\n"
        "name: psi-overlap\nfunction: psi\ncompute: compute-1\ninputs:\n"
        "  - {party: bank,    table: customers, key: customer_id, columns: []}\n"
        "  - {party: telco,   table: usage,     key: customer_id, columns: []}\n"
        "  - {party: insurer, table: policies,  key: customer_id, columns: []}\n"
        "params: {normalise: {trim: true, case: none, type: int}}\n"
        "release:\n  - {kind: size, to: [analyst, bank, telco, insurer]}\n")
    (d / "spend-by-region.yaml").write_text(
        "# Mean income and premium by region over customers of both the bank and the insurer.\n"
        "name: spend-by-region\nfunction: aggregate\ncompute: compute-1\ninputs:\n"
        "  - {party: bank,    table: customers, key: customer_id, columns: [region, income]}\n"
        "  - {party: insurer, table: policies,  key: customer_id, columns: [premium, claims]}\n"
        "params:\n  combine: join\n  group_by: [region]\n"
        "  metrics:\n    - {column: income, stats: [count, mean]}\n"
        "    - {column: premium, stats: [mean, std]}\n"
        "release:\n  - {kind: aggregate, to: [analyst, bank, insurer]}\n")
    (d / "default-risk.yaml").write_text(
        "# A default-risk model trained on bank and telco features joined on the customer.\n"
        "name: default-risk\nfunction: train\ncompute: compute-1\ninputs:\n"
        "  - {party: bank,  table: customers, key: customer_id, columns: [age, income, defaulted]}\n"
        "  - {party: telco, table: usage,     key: customer_id, columns: [minutes, data_gb, late_payments]}\n"
        "params: {layout: vertical, model: logistic_regression,\n"
        "         label: {party: bank, column: defaulted}, test_fraction: 0.2, seed: 7}\n"
        "release:\n  - {kind: model,   to: [analyst, bank]}\n  - {kind: metrics, to: [analyst, bank, telco]}\n")


@app.command("init")
def init(directory: Path = typer.Argument(..., help="Folder for the sandbox."),
         rows: int = typer.Option(20_000, "--rows", help="Rows per synthetic table (about)."),
         data: list[str] = typer.Option([], "--data", help="Use your own file: PARTY:TABLE=PATH (CSV or Parquet); "
                                                           "repeatable. Parties: bank, telco, insurer."),
         force: bool = typer.Option(False, "--force", help="Replace an existing sandbox."),
         computes: int = typer.Option(1, "--computes", help="How many compute nodes (compute-1, compute-2, ...)."),
         workers: int = typer.Option(0, "--workers", help="Make compute-1 a cluster leader with this many "
                                                          "compute-worker processes (compute-1-w1, ...)."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Create a consortium of three agencies, a compute node and a coordinator on loopback."""
    summary = init_sandbox(directory, rows=rows, own=_own_tables(data), force=force, computes=computes,
                           workers=workers)

    def render(c) -> None:
        c.print(f"sandbox in {summary['directory']}")
        c.print(f"  enclave measurement pinned by every owner: {summary['measurement']}")
        c.print("  [yellow]attestation is SIMULATED (allow_simulated: true): development only[/yellow]")
        c.print(f"  jobs: {', '.join(summary['jobs']) or 'none'}")
        if summary["workers"]:
            c.print(f"  compute-1 leads a cluster of {len(summary['workers'])} workers: {', '.join(summary['workers'])}")
        for note in summary["notes"]:
            c.print(f"  [yellow]not written[/yellow]: {note}")
        c.print(f"  next: teenet sandbox up {directory}")

    emit(summary, as_json, render)


def _processes(directory: Path) -> list[dict]:
    f = directory / PROCESS_FILE
    return json.loads(f.read_text()) if f.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def start_process(directory: Path, name: str, args: list[str]) -> dict:
    log = directory / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "teenet.cli.main", "--verbose", *args], cwd=directory,
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    return {"name": name, "pid": proc.pid, "log": str(log), "args": args, "log_offset": offset}


def _wait_ready(p: dict, marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    log = Path(p["log"])
    while time.monotonic() < deadline:
        text = log.read_bytes()[p.get("log_offset", 0):].decode(errors="replace") if log.exists() else ""
        if marker in text:
            return
        if not _alive(p["pid"]):
            tail = "\n".join(text.strip().splitlines()[-5:])
            raise TeenetError(f"{p['name']} exited during start-up; its log ({log}) ends:\n{tail}")
        time.sleep(0.1)
    raise TeenetError(f"{p['name']} did not become ready within {timeout:.0f}s (log: {log})")


def _expected(directory: Path) -> list[tuple[str, list[str], str]]:
    """Every process of the sandbox: (name, command line, the log line that says it is ready)."""
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    return [(COORDINATOR, ["coordinator", "serve", "--config", "coordinator.yaml"], "listening"),
            *((name, ["node", "serve", "--config", f"{name}.yaml"], " up; enclave ")
              for name in (*manifest["computes"], *manifest["parties"])),
            # a cluster's workers join their leader's admission port, so they start after it
            *((name, ["node", "serve", "--config", f"{name}.yaml"], "; upload service ")
              for name in manifest.get("workers", []))]


def _sandbox(directory: Path) -> Path:
    directory = directory.resolve()
    if not (directory / "consortium.yaml").exists() or not (directory / MANIFEST_FILE).exists():
        raise InputError(f"{directory} holds no sandbox; run `teenet sandbox init {directory}` first")
    return directory


def _running(p: dict) -> bool:
    """The recorded process is alive and still ours (a pid can be reused after a reboot)."""
    if not _alive(p["pid"]):
        return False
    try:
        cmdline = Path(f"/proc/{p['pid']}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return p["args"][-1].encode() in cmdline


def status_sandbox(directory: Path) -> list[dict]:
    """Each process of the sandbox, up or down, in start order."""
    directory = _sandbox(directory)
    recorded = {p["name"]: p for p in _processes(directory)}
    out = []
    for name, _, _ in _expected(directory):
        p = recorded.get(name)
        up = p is not None and _running(p)
        out.append({"name": name, "state": "up" if up else "down", "pid": p["pid"] if up else None,
                    "log": str(directory / "logs" / f"{name}.log")})
    return out


def up_sandbox(directory: Path, timeout: float = 60.0) -> list[dict]:
    """Start every process of the sandbox that is not running (all of them the first time).

    Returns one entry per process with `started` true for those this call started. If one
    fails to start, the ones this call started are stopped again; the others keep running.
    """
    from teenet.attestation.measure import enclave_manifest

    directory = _sandbox(directory)
    recorded = {p["name"]: p for p in _processes(directory) if _running(p)}
    missing = [(n, a, m) for n, a, m in _expected(directory) if n not in recorded]
    if missing:
        pinned = yaml.safe_load((directory / "consortium.yaml").read_text())["attestation"]["measurements"]
        current = enclave_manifest().measurement().hex()
        if current not in pinned:
            raise TeenetError(f"the enclave code changed since `sandbox init` (measurement {current[:16]}... is not "
                              f"pinned by the owners); re-run `teenet sandbox init --force {directory}`")
    (directory / "run").mkdir(exist_ok=True)
    procs = dict(recorded)
    started: list[dict] = []

    def record() -> None:
        (directory / PROCESS_FILE).write_text(json.dumps(list(procs.values()), indent=2))

    try:
        workers = set(json.loads((directory / MANIFEST_FILE).read_text()).get("workers", []))
        for name, args, marker in missing:
            if name in workers:
                continue  # below, once their leader is up
            p = start_process(directory, name, args)
            procs[name] = p
            started.append(p)
            record()
            if name == COORDINATOR:  # the nodes connect to it at once
                _wait_ready(p, marker, timeout)
        markers = {n: m for n, _, m in missing}
        for p in started:
            if p["name"] != COORDINATOR:
                _wait_ready(p, markers[p["name"]], timeout)
        for name, args, marker in missing:
            if name in workers:
                p = start_process(directory, name, args)
                procs[name] = p
                started.append(p)
                record()
                _wait_ready(p, marker, timeout)
    except BaseException:
        _stop(started)
        for p in started:
            procs.pop(p["name"], None)
        record()
        raise
    record()
    names = {p["name"] for p in started}
    return [procs[n] | {"started": n in names} for n, _, _ in _expected(directory)]


def console_urls(directory: Path) -> dict[str, dict[str, str]]:
    """Each daemon's console address and token file, from its config in the sandbox."""
    from teenet.config import load_node_config
    from teenet.coordinator.config import load_coordinator_config

    directory = directory.resolve()
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    found = {COORDINATOR: load_coordinator_config(directory / "coordinator.yaml").console}
    for name in (*manifest["computes"], *manifest["parties"]):
        found[name] = load_node_config(directory / f"{name}.yaml").console
    return {name: {"url": c.url, "token_file": str(c.token_file)} for name, c in found.items() if c is not None}


def _stop(procs: list[dict], timeout: float = 15.0) -> None:
    for p in procs:
        if _running(p):
            try:
                os.kill(p["pid"], signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    for p in procs:
        while _alive(p["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(p["pid"]):
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except OSError:
                pass


def down_sandbox(directory: Path, timeout: float = 15.0) -> list[str]:
    """Stop every recorded process of the sandbox; returns the names of those that were up."""
    directory = directory.resolve()
    procs = _processes(directory)
    was_up = [p["name"] for p in procs if _running(p)]
    _stop(procs, timeout)
    f = directory / PROCESS_FILE
    if f.exists():
        f.unlink()
    return was_up


@app.command("up")
def up(directory: Path = typer.Argument(..., help="A folder made by `teenet sandbox init`."),
       as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Start the sandbox's processes that are not running: coordinator, compute nodes, data nodes."""
    procs = up_sandbox(directory)
    consoles = console_urls(directory)
    for p in procs:
        p["console"] = consoles.get(p["name"], {}).get("url")

    def render(c) -> None:
        for p in procs:
            what = "started" if p["started"] else "already up"
            c.print(f"  {p['name']:<12} {what:<10} pid {p['pid']:<7} log {p['log']}")
        started = [p["name"] for p in procs if p["started"]]
        c.print(f"started {', '.join(started)}" if started else "every process was already up")
        for name, where in consoles.items():
            c.print(f"  console {name:<12} {where['url']}  (operator token in {where['token_file']})")
        c.print(f"Try: teenet job submit --config {directory}/analyst.yaml {directory}/jobs/psi-overlap.yaml --wait")

    emit(procs, as_json, render)


@app.command("status")
def status(directory: Path = typer.Argument(..., help="A sandbox folder."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Each process of the sandbox, up or down. Exits 1 when any is down."""
    procs = status_sandbox(directory)

    def render(c) -> None:
        for p in procs:
            state = "[green]up[/green]  " if p["state"] == "up" else "[red]down[/red]"
            c.print(f"  {p['name']:<12} {state} " + (f"pid {p['pid']:<7} " if p["pid"] else " " * 12)
                    + f"log {p['log']}")

    emit(procs, as_json, render)
    down = [p["name"] for p in procs if p["state"] == "down"]
    if down:
        raise TeenetError(f"{len(down)} of {len(procs)} processes are down: {', '.join(down)} "
                          f"(`teenet sandbox up {directory}` starts only those)")


@app.command("down")
def down(directory: Path = typer.Argument(..., help="A sandbox folder."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Stop every process of the sandbox."""
    stopped = down_sandbox(_sandbox(directory))
    emit({"stopped": stopped}, as_json, lambda c: c.print(
        f"stopped {', '.join(stopped)}" if stopped else "no process of this sandbox was running"))
