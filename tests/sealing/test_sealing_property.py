"""Property: any table, cut into any batches and chunks, comes back exactly, metadata included."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealing_tables import BINDING, assert_same_table, key
from teenet.sealing import SealedTableReader, SealedTableWriter

TIMEZONES = [None, "UTC", "Europe/Oslo", "+05:30"]


def _nullable(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), values)


# (arrow type, strategy for one value); each column draws its values from its type's strategy.
COLUMN_KINDS = st.sampled_from([
    (pa.int8(), _nullable(st.integers(-128, 127))),
    (pa.int64(), _nullable(st.integers(-2**63, 2**63 - 1))),
    (pa.uint16(), _nullable(st.integers(0, 2**16 - 1))),
    (pa.float64(), _nullable(st.floats(allow_nan=True, allow_infinity=True))),
    (pa.float32(), _nullable(st.floats(width=32))),
    (pa.bool_(), _nullable(st.booleans())),
    (pa.string(), _nullable(st.text(max_size=12))),
    (pa.large_binary(), _nullable(st.binary(max_size=12))),
    (pa.decimal128(12, 3), _nullable(st.decimals(min_value=Decimal("-999999999.999"),
                                                 max_value=Decimal("999999999.999"),
                                                 places=3, allow_nan=False, allow_infinity=False))),
    (pa.list_(pa.int32()), _nullable(st.lists(_nullable(st.integers(-2**31, 2**31 - 1)), max_size=4))),
    (pa.struct([("x", pa.int64()), ("y", pa.string())]),
     _nullable(st.fixed_dictionaries({"x": _nullable(st.integers(-10, 10)), "y": _nullable(st.text(max_size=5))}))),
    (pa.null(), st.none()),
    ("dictionary", _nullable(st.sampled_from(["north", "south", "øst", "vest"]))),
    *[(pa.timestamp("ms", tz=tz), _nullable(st.integers(-6 * 10**13, 2 * 10**14))) for tz in TIMEZONES],
])

METADATA = st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(0, 40))
    kinds = draw(st.lists(COLUMN_KINDS, min_size=1, max_size=6))
    arrays, fields = [], []
    for number, (arrow_type, values) in enumerate(kinds):
        column = draw(st.lists(values, min_size=rows, max_size=rows))
        if arrow_type == "dictionary":
            array = pa.array(column, pa.string()).dictionary_encode()
        else:
            array = pa.array(column, arrow_type)
        name = draw(st.text(max_size=8))
        field_metadata = draw(METADATA) or None
        fields.append(pa.field(name, array.type, metadata=field_metadata))
        arrays.append(array)
    schema = pa.schema(fields, metadata=draw(METADATA) or None)
    return pa.Table.from_arrays(arrays, schema=schema)


@st.composite
def batch_cuts(draw: st.DrawFn, rows: int) -> list[int]:
    return sorted(draw(st.lists(st.integers(0, rows), max_size=4)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), chunk_size=st.integers(64, 2048), data=st.data())
def test_any_table_round_trips_exactly(table: pa.Table, chunk_size: int, data: st.DataObject) -> None:
    cuts = data.draw(batch_cuts(table.num_rows))
    bounds = [0, *cuts, table.num_rows]
    batches = [b for start, stop in zip(bounds, bounds[1:])
               for b in table.slice(start, stop - start).to_batches()]
    writer = SealedTableWriter(key(), BINDING, table.schema, chunk_size)
    messages = [writer.header(), *writer.seal_batches(batches)]
    assert all(len(m) <= chunk_size + 25 for m in messages[1:])
    assert_same_table(SealedTableReader(key(), BINDING).read_table(messages), table)
