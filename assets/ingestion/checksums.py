"""The key checksum: shows that the rows loaded are the rows the source holds.

The server computes it in the statement that reads the rows (`shard_sql`), the load computes
it over what it received (`key_checksum`); reconciliation compares the two.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.ingestion.mysql_types import type_family
from assets.ingestion.shard_catalog import PhysicalTable

CHECKSUM_MODULUS = 2**64


def crc32(value: object) -> int | None:
    """CRC32 of a value's bytes (text as UTF-8), as MySQL's `CRC32()` computes it."""
    if value is None:
        return None
    return zlib.crc32(value if isinstance(value, bytes) else str(value).encode())


def integer_keys(tables: Sequence[PhysicalTable], key_columns: Sequence[str]) -> tuple[bool, ...]:
    """Per key column: summed as a number where every table that has it declares an integer
    type, else as CRC32s (a client that widened its key to DECIMAL makes it CRC32 for all)."""
    decisions = []
    for column in key_columns:
        declared = [t.declared_type(column) for t in tables]
        present = [d for d in declared if d is not None]
        decisions.append(bool(present) and all(type_family(d) == "integer" for d in present))
    return tuple(decisions)


def key_checksum(data: pa.Table, key_columns: Sequence[str], is_integer: Sequence[bool]) -> int:
    """Sum over rows of the key values (integer keys) or their CRC32 (other keys), mod 2**64.

    Order-independent and computed by the server from the index alone, it shows that the
    rows loaded are the rows the source holds: a lost row, a duplicated one or a substituted
    key changes it even where the count stays the same.
    """
    total = 0
    for column, integer in zip(key_columns, is_integer, strict=True):
        values = data[column]
        if integer:
            present = pc.drop_null(values)  # SUM skips NULLs
            try:
                numbers = pc.cast(present, pa.int64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # Beyond int64 (BIGINT UNSIGNED) or not a number: exact, value by value.
                total += sum(int(v) for v in present.to_pylist())
                continue
            # Two's complement wraps like arithmetic mod 2**64, which is what is compared.
            total += int(numbers.view(np.uint64).sum(dtype=np.uint64))
        else:
            total += sum(crc32(v) or 0 for v in values.to_pylist())
    return total % CHECKSUM_MODULUS
