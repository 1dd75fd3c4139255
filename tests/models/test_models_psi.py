"""PSI: exact against pandas and set references, n parties, normalisation, sums and k."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from teenet.errors import InputError, ReleaseRefused
from teenet.models import PartyInput, ReleaseRequest, run_function
from teenet.models.payloads import read_arrow

from models_helpers import rules_for

EVERYONE = {"size": {"a", "b", "c", "d"}, "ids": {"a", "b", "c", "d"}, "sums": {"a", "b", "c", "d"}}


def _run(inputs, params, *kinds, recipient="a", k=1):
    rules = rules_for(EVERYONE, {i.party for i in inputs}, k=k)
    return {r.kind: r for r in run_function("psi", inputs, params,
                                            [ReleaseRequest(kind, (recipient,)) for kind in kinds], rules)}


def _messy(values: list[str], rng: np.random.Generator) -> list[str]:
    """The same ids as another party might hold them: random case and stray blanks."""
    out = []
    for v in values:
        v = v.upper() if rng.random() < 0.5 else v
        out.append((" " if rng.random() < 0.3 else "") + v + ("  " if rng.random() < 0.3 else ""))
    return out


def test_multi_column_keys_with_normalisation_match_pandas_reference():
    rng = np.random.default_rng(1)
    n = 3000
    surname = np.array([f"name{i % 400}" for i in range(n)])
    birth = rng.integers(1950, 2000, n)
    left = pd.DataFrame({"surname": surname, "born": birth.astype(str), "x": rng.normal(size=n)})
    pick = rng.choice(n, 2000, replace=False)
    right = pd.DataFrame({"last": _messy(list(surname[pick]), rng), "year": birth[pick]})
    extra = pd.DataFrame({"last": [f"other{i}" for i in range(500)], "year": rng.integers(1950, 2000, 500)})
    right = pd.concat([right, extra]).sample(frac=1, random_state=3)

    a = PartyInput("a", "people", ("surname", "born"), ("x",), pa.Table.from_pandas(left, preserve_index=False))
    b = PartyInput("b", "subs", ("last", "year"), (), pa.Table.from_pandas(right, preserve_index=False))
    params = {"normalise": {"trim": True, "case": "lower", "type": "str"}}
    out = _run([a, b], params, "size", "ids")

    ref_right = right.assign(last=right["last"].str.strip().str.lower(), year=right["year"].astype(str))
    reference = (left[["surname", "born"]].drop_duplicates()
                 .merge(ref_right.rename(columns={"last": "surname", "year": "born"}).drop_duplicates(),
                        on=["surname", "born"]).sort_values(["surname", "born"]).reset_index(drop=True))
    assert json.loads(out["size"].payload) == {"intersection_size": len(reference)}
    ids = read_arrow(out["ids"].payload).to_pandas()
    assert ids.columns.tolist() == ["surname", "born"]
    pd.testing.assert_frame_equal(ids, reference)
    assert len(reference) > 100  # the test exercises real overlap


def test_without_normalisation_messy_keys_do_not_match():
    a = PartyInput("a", "t", ("k",), (), pa.table({"k": ["ann", "bob"]}))
    b = PartyInput("b", "t", ("k",), (), pa.table({"k": [" ANN", "bob"]}))
    assert json.loads(_run([a, b], {}, "size")["size"].payload)["intersection_size"] == 1
    both = _run([a, b], {"normalise": {"trim": True, "case": "lower"}}, "size")
    assert json.loads(both["size"].payload)["intersection_size"] == 2


@pytest.mark.parametrize("parties", [3, 4])
def test_n_party_intersection(parties):
    rng = np.random.default_rng(parties)
    sets = [set(rng.choice(5000, 3000, replace=False).tolist()) for _ in range(parties)]
    inputs = [PartyInput(p, "t", ("id",), (), pa.table({"id": pa.array(sorted(s, key=lambda _: rng.random()))}))
              for p, s in zip("abcd", sets)]
    out = _run(inputs, {}, "size", "ids")
    expected = sorted(set.intersection(*sets))
    assert json.loads(out["size"].payload)["intersection_size"] == len(expected)
    assert read_arrow(out["ids"].payload).column("id").to_pylist() == expected


def test_int_normalisation_matches_text_and_numbers():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1, 2, 3, 40]}))
    b = PartyInput("b", "t", ("id",), (), pa.table({"id": [" 1", "2 ", "003", "4"]}))
    out = _run([a, b], {"normalise": {"type": "int"}}, "ids")
    assert read_arrow(out["ids"].payload).column("id").to_pylist() == [1, 2, 3]


def test_int_normalisation_refuses_non_integers_without_showing_the_value():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1, 2]}))
    b = PartyInput("b", "t", ("id",), (), pa.table({"id": ["1", "secret-ssn-123"]}))
    with pytest.raises(InputError) as err:
        _run([a, b], {"normalise": {"type": "int"}}, "size")
    assert err.value.field == "params.normalise.type"
    assert "b.t" in str(err.value) and "secret-ssn" not in str(err.value)


def test_key_types_that_differ_need_a_stated_type():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1, 2]}))
    b = PartyInput("b", "t", ("id",), (), pa.table({"id": ["1", "2"]}))
    with pytest.raises(InputError, match="key types differ") as err:
        _run([a, b], {}, "size")
    assert err.value.field == "params.normalise.type"
    assert json.loads(_run([a, b], {"normalise": {"type": "str"}}, "size")["size"].payload)["intersection_size"] == 2


def test_null_keys_never_match():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": pa.array([None, "x"], pa.string())}))
    b = PartyInput("b", "t", ("id",), (), pa.table({"id": pa.array([None, "x"], pa.string())}))
    assert json.loads(_run([a, b], {}, "size")["size"].payload)["intersection_size"] == 1


def test_sums_over_the_intersection_match_a_pandas_join():
    rng = np.random.default_rng(7)
    customers = pd.DataFrame({"id": rng.permutation(2000)[:1500]})
    spend = pd.DataFrame({"cid": rng.integers(0, 3000, 6000), "amount": rng.integers(1, 500, 6000)})
    a = PartyInput("a", "customers", ("id",), (), pa.Table.from_pandas(customers, preserve_index=False))
    b = PartyInput("b", "spend", ("cid",), ("amount",), pa.Table.from_pandas(spend, preserve_index=False))
    out = _run([a, b], {"payload": [{"party": "b", "column": "amount"}]}, "sums", k=10)
    document = json.loads(out["sums"].payload)
    inside = spend[spend["cid"].isin(set(customers["id"]))]
    assert document["intersection_size"] == len(set(customers["id"]) & set(spend["cid"]))
    assert document["sums"] == [{"party": "b", "table": "spend", "column": "amount",
                                 "sum": int(inside["amount"].sum()), "count": len(inside), "suppressed": False}]


@pytest.mark.parametrize("kind", ["size", "ids", "sums"])
def test_every_release_is_refused_when_the_intersection_is_below_k_without_saying_its_size(kind):
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1, 2, 3]}))
    b = PartyInput("b", "t", ("id",), ("amount",), pa.table({"id": [1, 2, 9], "amount": [10, 20, 30]}))
    with pytest.raises(ReleaseRefused, match=r"release.min_group_size: the intersection has fewer ids than the "
                                             r"owners' minimum group size \(expected >= 5\)") as err:
        _run([a, b], {"payload": [{"party": "b", "column": "amount"}]}, kind, k=5)
    assert not re.search(r"\b2\b", str(err.value))


def test_a_psi_size_over_a_3_id_probe_is_refused_under_k_10():
    rng = np.random.default_rng(3)
    customers = PartyInput("bank", "customers", ("id",), (), pa.table({"id": rng.permutation(5000)}))
    probe = PartyInput("analyst", "probe", ("id",), (), pa.table({"id": [17, 4242, 99_999]}))
    with pytest.raises(ReleaseRefused, match=r"fewer ids than the owners' minimum group size \(expected >= 10\)"):
        _run([customers, probe], {}, "size", k=10)
    bigger = PartyInput("analyst", "probe", ("id",), (), pa.table({"id": np.arange(10)}))
    assert json.loads(_run([customers, bigger], {}, "size", k=10)["size"].payload) == {"intersection_size": 10}


def test_a_sum_from_fewer_than_k_non_null_values_is_suppressed():
    """An intersection of 10 where 9 payload values are null: the one value never leaves."""
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": np.arange(10)}))
    amounts = pa.array([None] * 9 + [987_654], pa.int64())
    b = PartyInput("b", "t", ("id",), ("amount", "visits"),
                   pa.table({"id": np.arange(10), "amount": amounts, "visits": np.ones(10, dtype=np.int64)}))
    out = _run([a, b], {"payload": [{"party": "b", "column": "amount"}, {"party": "b", "column": "visits"}]},
               "sums", k=10)
    document = json.loads(out["sums"].payload)
    assert document["sums"][0] == {"party": "b", "table": "t", "column": "amount", "sum": None, "count": None,
                                   "suppressed": True}
    assert document["sums"][1]["sum"] == 10 and document["sums"][1]["suppressed"] is False
    assert b"987654" not in out["sums"].payload


def test_sums_need_a_payload_naming_a_shipped_column():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1]}))
    b = PartyInput("b", "t", ("id",), ("amount",), pa.table({"id": [1], "amount": [1]}))
    with pytest.raises(InputError) as err:
        _run([a, b], {}, "sums")
    assert err.value.field == "params.payload"
    with pytest.raises(InputError, match="not among the columns b ships"):
        _run([a, b], {"payload": [{"party": "b", "column": "salary"}]}, "sums")


def test_psi_needs_two_parties_with_keys_of_one_arity():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1]}))
    with pytest.raises(InputError, match="at least 2"):
        _run([a], {}, "size")
    b = PartyInput("b", "t", ("id", "x"), (), pa.table({"id": [1], "x": [1]}))
    with pytest.raises(InputError, match="same number of key columns"):
        _run([a, b], {}, "size")


def test_an_empty_intersection_is_below_any_k_and_refused():
    a = PartyInput("a", "t", ("id",), (), pa.table({"id": [1, 2]}))
    b = PartyInput("b", "t", ("id",), (), pa.table({"id": [3, 4]}))
    with pytest.raises(ReleaseRefused, match="fewer ids than"):
        _run([a, b], {}, "size", "ids")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-50, 50), max_size=40), min_size=2, max_size=4))
def test_psi_size_equals_set_intersection(key_lists):
    inputs = [PartyInput(p, "t", ("id",), (), pa.table({"id": pa.array(keys, pa.int64())}))
              for p, keys in zip("abcd", key_lists)]
    expected = len(set.intersection(*map(set, key_lists)))
    if expected == 0:
        with pytest.raises(ReleaseRefused, match="fewer ids than"):
            _run(inputs, {}, "size")
        return
    out = _run(inputs, {}, "size")
    assert json.loads(out["size"].payload)["intersection_size"] == expected


def test_a_million_by_a_million_is_fast():
    rng = np.random.default_rng(0)
    left = pa.table({"id": rng.permutation(2_000_000)[:1_000_000]})
    right = pa.table({"id": rng.permutation(2_000_000)[:1_000_000]})
    start = time.perf_counter()
    out = _run([PartyInput("a", "t", ("id",), (), left), PartyInput("b", "t", ("id",), (), right)], {}, "size")
    elapsed = time.perf_counter() - start
    expected = len(np.intersect1d(left.column("id").to_numpy(), right.column("id").to_numpy()))
    assert json.loads(out["size"].payload)["intersection_size"] == expected
    assert elapsed < 5.0, f"1M x 1M PSI took {elapsed:.1f}s"


@pytest.mark.slow
def test_ten_million_by_ten_million_takes_seconds():
    rng = np.random.default_rng(0)
    left = pa.table({"id": rng.permutation(20_000_000)[:10_000_000]})
    right = pa.table({"id": rng.permutation(20_000_000)[:10_000_000]})
    start = time.perf_counter()
    out = _run([PartyInput("a", "t", ("id",), (), left), PartyInput("b", "t", ("id",), (), right)], {}, "size")
    elapsed = time.perf_counter() - start
    assert json.loads(out["size"].payload)["intersection_size"] > 4_900_000
    assert elapsed < 15.0, f"10M x 10M PSI took {elapsed:.1f}s"
