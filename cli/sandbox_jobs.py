"""The example jobs `teenet sandbox init --data` writes for the parties' own files.

Each file is read once, through the same Arrow scanner a data node uses, before anything
is written: a malformed file or a column name a job cannot use stops `init` with one line
naming the file (and the column). From the tables' real columns and types it writes jobs
that run as they are: a PSI on the column the tables share (normalised as its type needs:
int keys as int, text keys trimmed text), an aggregate over the numeric columns, a train
job when some column is a 0/1 label, and a predict template to fill in after the train
job. What it cannot infer it does not guess: it leaves that job out and says what to add.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from teenet.errors import InputError

# Column names that look like an id: preferred as the key among the columns files share.
_ID_HINT = re.compile(r"(^|_)(id|key|ident|identifier)$|_id$|^id_", re.IGNORECASE)
MAX_GROUPS = 50
MAX_METRICS = 3


@dataclass(frozen=True)
class OwnTable:
    """One party's file as a job sees it: its columns, their kinds, and small facts."""

    party: str
    table: str
    path: Path
    kinds: dict[str, str]  # column -> int | float | str | bool | other
    distinct: dict[str, int]  # column -> distinct non-null values (capped at MAX_GROUPS + 1)
    rows: int
    unique: dict[str, bool]  # column -> no value repeats

    def columns(self, *kinds: str) -> list[str]:
        return [c for c, k in self.kinds.items() if k in kinds]


def inspect_table(party: str, table: str, path: Path) -> OwnTable:
    """Read the whole file as the node will (so a bad row fails here, not in a job)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.dataset as pads

    from teenet.jobspec import COLUMN_NAME

    try:
        if path.suffix.lower() == ".csv":
            data = pads.dataset(str(path), format=pads.CsvFileFormat(
                read_options=pacsv.ReadOptions(block_size=8 << 20))).to_table()
        else:
            import pyarrow.parquet as pq

            data = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail[detail.find("CSV parse error"):] if "CSV parse error" in detail else detail
        raise InputError(f"cannot be read as {path.suffix.lstrip('.').upper()}: {detail[:300]}", source=str(path)) from None
    if data.num_columns == 0 or data.num_rows == 0:
        raise InputError("the file has no columns or no rows", source=str(path))
    kinds, distinct, unique = {}, {}, {}
    for name, column in zip(data.column_names, data.columns):
        if not COLUMN_NAME.fullmatch(name):
            raise InputError(f"column '{name}' cannot be named in a job (letters, digits and _, not starting "
                             "with a digit; up to 63): rename it in the file", source=str(path))
        t = column.type
        kinds[name] = ("bool" if pa.types.is_boolean(t) else "int" if pa.types.is_integer(t)
                       else "float" if pa.types.is_floating(t)
                       else "str" if pa.types.is_string(t) or pa.types.is_large_string(t) else "other")
        values = pc.unique(column.drop_null())
        distinct[name] = len(values)
        unique[name] = len(values) == len(column) and column.null_count == 0
    return OwnTable(party, table, path, kinds, distinct, data.num_rows, unique)


@dataclass(frozen=True)
class JobPlan:
    """The job files to write and, for each job left out, what the user should add."""

    files: dict[str, str]
    notes: list[str]


def plan_jobs(tables: list[OwnTable], analyst: str, compute: str) -> JobPlan:
    """Jobs over each party's first table (see the module docstring)."""
    first: dict[str, OwnTable] = {}
    for t in tables:
        first.setdefault(t.party, t)
    chosen = list(first.values())
    key = _shared_key(chosen)
    kinds = {t.kinds[key] for t in chosen}
    norm = ("{type: int}" if kinds == {"int"} else "{trim: true, type: str}")
    files: dict[str, str] = {}
    notes: list[str] = []
    everyone = [analyst, *first]

    def inputs(parts: list[tuple[OwnTable, list[str]]]) -> str:
        return "".join(f"  - {{party: {t.party}, table: {t.table}, key: {key}, columns: [{', '.join(cols)}]}}\n"
                       for t, cols in parts)

    header = (f"# Written by `teenet sandbox init` for your own files; key column '{key}' "
              f"({'/'.join(sorted(kinds))} in the files). Edit freely; check with `teenet job validate`.\n")
    if len(chosen) >= 2:
        files["psi-overlap"] = (header + f"# How many {key} values do {', '.join(first)} share? Only the count leaves.\n"
                                f"name: psi-overlap\nfunction: psi\ncompute: {compute}\ninputs:\n"
                                + inputs([(t, []) for t in chosen])
                                + f"params: {{normalise: {norm}}}\n"
                                f"release:\n  - {{kind: size, to: [{', '.join(everyone)}]}}\n")
    else:
        notes.append("psi-overlap: a PSI needs two parties' files; give a second --data PARTY:TABLE=PATH")

    # Numeric columns, each party's first ones first: a join shows more than one table.
    per_party = [[(t, c) for c in t.columns("int", "float") if c != key] for t in chosen]
    numeric = [pair for rank in range(max(map(len, per_party))) for cols in per_party if rank < len(cols)
               for pair in [cols[rank]]]
    groups = [(t, c) for t in chosen for c in t.columns("str", "bool") if c != key and 2 <= t.distinct[c] <= MAX_GROUPS]
    if numeric:
        metrics = numeric[:MAX_METRICS]
        group = groups[0] if groups else None
        used: dict[str, list[str]] = {}
        owners: dict[str, OwnTable] = {}
        for t, c in ([group] if group else []) + metrics:
            used.setdefault(t.party, []).append(c)
            owners[t.party] = t
        parts = [(owners[p], cols) for p, cols in used.items()]
        files["summary"] = (
            header + "# Statistics of your numeric columns"
            + (f" by {group[1]}" if group else "") + "; groups under the owners' minimum size are suppressed.\n"
            f"name: summary\nfunction: aggregate\ncompute: {compute}\ninputs:\n" + inputs(parts)
            + f"params:\n  combine: join\n  normalise: {norm}\n  group_by: [{group[1] if group else ''}]\n"
            "  metrics:\n" + "".join(f"    - {{column: {c}, stats: [count, mean, p50]}}\n" for _, c in metrics)
            + f"release:\n  - {{kind: aggregate, to: [{', '.join([analyst, *used])}]}}\n")
    else:
        notes.append("summary: no numeric column to aggregate; add one, or write the job by hand (docs/jobs.md)")

    labels = [(t, c) for t in chosen for c in t.kinds if c != key and t.distinct[c] == 2
              and t.kinds[c] in ("int", "bool", "str")]
    if not labels:
        notes.append("default-risk, predict: no column with exactly two values to use as a label; add a 0/1 "
                     "column, or write a train job by hand (docs/jobs.md)")
        return JobPlan(files, notes)
    repeated = [f"{t.party}/{t.table}" for t in chosen if not t.unique[key]]
    if repeated:
        notes.append(f"default-risk, predict: key '{key}' repeats in {', '.join(repeated)}; a vertical train joins "
                     "one row per key: give one row per key, or write the job by hand (docs/jobs.md)")
        return JobPlan(files, notes)
    label_table, label = labels[0]
    features = {t.party: [c for c in t.columns("int", "float") if c not in (key, label)]
                + [c for c in t.columns("str", "bool") if c not in (key, label) and t.distinct[c] <= MAX_GROUPS]
                for t in chosen}
    if not any(features.values()):
        notes.append(f"default-risk, predict: no feature column besides the label '{label}'; add one")
        return JobPlan(files, notes)
    parts = [(t, features[t.party] + ([label] if t is label_table else [])) for t in chosen
             if features[t.party] or t is label_table]
    files["default-risk"] = (
        header + f"# A logistic regression predicting {label_table.party}'s '{label}' from every party's columns.\n"
        f"name: default-risk\nfunction: train\ncompute: {compute}\ninputs:\n" + inputs(parts)
        + f"params: {{layout: vertical, model: logistic_regression,\n"
        f"         label: {{party: {label_table.party}, column: {label}}}, test_fraction: 0.25, seed: 7,\n"
        f"         normalise: {norm}}}\n"
        f"release:\n  - {{kind: model,   to: [{analyst}, {label_table.party}]}}\n"
        f"  - {{kind: metrics, to: [{', '.join([analyst, *(t.party for t, _ in parts)])}]}}\n")
    scored = [(t, features[t.party]) for t, _ in parts if features[t.party] or t is label_table]
    files["predict"] = (
        "# A TEMPLATE: score the rows of every party's table with the model default-risk releases.\n"
        "# 1. Run jobs/default-risk.yaml: `teenet job submit --config analyst.yaml jobs/default-risk.yaml --wait`.\n"
        "# 2. Put its job id (the 64 hex digits it prints) in params.model.job below, then submit this file.\n"
        f"# {label_table.party} received the model, so {label_table.party} ships it into the job; "
        f"the scores go to {label_table.party} only.\n"
        f"name: predict\nfunction: predict\ncompute: {compute}\ninputs:\n" + inputs(scored)
        + f"params:\n  model: {{job: \"<64-hex id of the train job>\", from: {label_table.party}}}\n"
        f"  ids_from: {label_table.party}\n  normalise: {norm}\n"
        f"release:\n  - {{kind: scores, to: [{label_table.party}]}}\n")
    return JobPlan(files, notes)


def _shared_key(chosen: list[OwnTable]) -> str:
    """The key column: a name in every party's table (an id-like one first)."""
    if len(chosen) == 1:
        t = chosen[0]
        hinted = [c for c in t.kinds if _ID_HINT.search(c) and t.kinds[c] in ("int", "str")]
        return (hinted or [next(iter(t.kinds))])[0]
    common = [c for c in chosen[0].kinds if all(c in t.kinds for t in chosen[1:])]
    if not common:
        listed = "; ".join(f"{t.party}/{t.table} ({t.path.name}): {', '.join(t.kinds)}" for t in chosen)
        raise InputError(f"the files share no column name, so no job can match their rows; give the key column "
                         f"the same name in each file ({listed})")
    hinted = [c for c in common if _ID_HINT.search(c)]
    key = (hinted or common)[0]
    odd = [f"{t.party}/{t.table} ({t.kinds[key]})" for t in chosen if t.kinds[key] not in ("int", "str")]
    if odd:
        raise InputError(f"key column '{key}' must hold integers or text in every file; it does not in "
                         f"{', '.join(odd)}: edit those files")
    return key
