"""`teenet catalog register`'s fingerprint (cli/catalog.py, docs/format.md "Table registration"):
the same definition as a shipped table's, so a job that ships the same columns in the same
order carries the same fingerprint, and any other column set or one changed cell differs."""

from __future__ import annotations

from teenet.cli.catalog import NO_JOB, table_fingerprint
from teenet.lineage import Fingerprinter
from teenet.node.catalog import Catalog, CatalogTable
from teenet.sealing import SealedTableReader, StreamBinding, TableKey, seal_table

COLUMNS = ["customer_id", "age", "income"]


def _catalog(tmp_path, name="t.csv", income_of_7=700):
    path = tmp_path / name
    lines = ["customer_id,age,income,secret"] + [f"c{i},{20 + i % 50},{income_of_7 if i == 7 else i * 100},{i}"
                                                   for i in range(500)]
    path.write_text("\n".join(lines) + "\n")
    return Catalog({"customers": CatalogTable("customers", "csv", path, None, None)})


def _shipped_and_opened(catalog, columns):
    """What a data node ships for a job (its own sealing path) and what the enclave recomputes."""
    key, binding = TableKey.generate(), StreamBinding(bytes(range(32)), "bank", "customers")
    sent = Fingerprinter()
    messages = list(seal_table(catalog.batches("customers", columns), key, binding, on_chunk=sent.add_chunk))
    opened = Fingerprinter()
    SealedTableReader(key, binding, on_chunk=opened.add_chunk).read_table(messages)
    return sent.root(), opened.root()


def test_a_registration_matches_a_shipment_of_the_same_columns_and_differs_otherwise(tmp_path):
    catalog = _catalog(tmp_path)
    root, chunks, rows, order = table_fingerprint(catalog, "bank", "customers", ["income", "customer_id", "age"])
    assert order == COLUMNS  # the table's own order, whatever order the policy lists them in
    assert rows == 500 and chunks >= 1
    sent, opened = _shipped_and_opened(catalog, COLUMNS)
    assert root == sent == opened  # the job's and the enclave's fingerprint of the same columns
    assert NO_JOB == bytes(32)
    # a job's fingerprint over other granted columns differs by design
    assert _shipped_and_opened(catalog, ["customer_id", "income"])[0] != root
    assert _shipped_and_opened(catalog, ["customer_id", "income", "age"])[0] != root  # other order
    # one changed cell: another fingerprint
    edited = _catalog(tmp_path, "t2.csv", income_of_7=701)
    assert table_fingerprint(edited, "bank", "customers", COLUMNS)[0] != root
    # the same table again: the same fingerprint (keys and bindings do not enter it)
    assert table_fingerprint(catalog, "bank", "customers", COLUMNS)[0] == root
