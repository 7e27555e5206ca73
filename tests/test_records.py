"""Tidy records: every column, a lossless JSONL round trip, the documented schema."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kgtest.errors import InputError
from kgtest.records import (
    COLUMNS,
    RECORDS,
    new_row,
    read_records,
    read_runs,
    schema_markdown,
    write_records,
)


def _rows():
    return [
        new_row(run_id="r0", seed_world=1, seed_train=2, seed_unlearn=None, seed_attack=4,
                variant="NPO", probe="cot", fact=np.int64(7), subject="e1", relation="r0_r3",
                object="e9", correct=np.bool_(True), score=np.float32(-0.25), rank=1,
                n_candidates=20, chance=0.05, gated_in=True, gate="cot",
                output="e1 r0 e2 . e2 r3 e9 . A e9", derived=True, presentation="cot",
                proofs=2, depth=1, entity_freq=3, rules="0:r0_r3", split="forget",
                chain_valid=True, chain_entails=True, n_steps=2, n_true_steps=2),
        new_row(run_id="r0", variant="filter", probe="quantize", setting="int4", fact=8,
                correct=None, score=float("nan"), bits=4, applicable=False),
    ]


def test_round_trip(tmp_path):
    rows = _rows()
    path = write_records(rows, tmp_path)
    assert path == tmp_path / RECORDS
    back = read_records(tmp_path)
    assert back[0] == rows[0]
    assert back[1]["score"] is None  # NaN is written as null
    assert {k: v for k, v in back[1].items() if k != "score"} == {
        k: v for k, v in rows[1].items() if k != "score"}
    line = json.loads(path.read_text().splitlines()[0])
    assert list(line) == list(COLUMNS)  # columns in schema order
    assert type(back[0]["fact"]) is int and type(back[0]["score"]) is float
    assert read_records(path) == back  # a file works as well as its folder


def test_rows_have_every_column_and_refuse_unknown_ones():
    r = new_row(fact=1)
    assert set(r) == set(COLUMNS) and r["gated_in"] is False and r["applicable"] is True
    with pytest.raises(KeyError, match="colour"):
        new_row(colour="red")


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read records"):
        read_records(tmp_path)
    good = json.dumps(_rows()[0])
    (tmp_path / RECORDS).write_text(f'{good}\nnot json\n')
    with pytest.raises(InputError, match=r"records.jsonl:2"):
        read_records(tmp_path)


@pytest.mark.parametrize("change, reason", [
    ({"fact": "3"}, "'fact' must be an integer"),
    ({"correct": "false"}, "'correct' must be true/false"),
    ({"score": "NaN"}, "'score' must be a finite number, got nan"),
    ({"score": "Infinity"}, "'score' must be a finite number"),
    ({"gated_in": 1}, "'gated_in' must be true/false"),
    ({"run_id": None}, "'run_id' is null"),
    ({"variant": "DROP"}, "missing key 'variant'"),
])
def test_records_of_the_wrong_shape_are_refused(tmp_path, change, reason):
    """A wrong type, a missing key or a NaN score: one line naming file and line."""
    row = dict(_rows()[0])
    for k, v in change.items():
        if v == "DROP":
            del row[k]
        else:
            row[k] = v
    text = json.dumps(row).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    (tmp_path / RECORDS).write_text(json.dumps(_rows()[1]).replace("NaN", "null") + "\n"
                                    + text + "\n")
    with pytest.raises(InputError, match=rf"records.jsonl:2: bad record \({reason}"):
        read_records(tmp_path)


def test_a_run_given_twice_is_refused(tmp_path):
    write_records(_rows(), tmp_path)
    with pytest.raises(InputError, match=r"records.jsonl:1: the same record as .*"
                                         r"records.jsonl:1 .*counted twice"):
        read_runs([tmp_path, tmp_path])
    (tmp_path / RECORDS).write_text((tmp_path / RECORDS).read_text() * 2)
    with pytest.raises(InputError, match=r"records.jsonl:3: the same record as "):
        read_records(tmp_path)


def test_schema_is_documented_for_every_column():
    md = schema_markdown()
    documented = [line.split("`")[1] for line in md.splitlines()[2:]]
    assert documented == list(COLUMNS)
    assert all(not line.endswith("|  |") for line in md.splitlines())


def test_parquet_when_pyarrow_is_present(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    write_records(_rows(), tmp_path)
    table = pq.read_table(tmp_path / "records.parquet")
    assert table.column_names == list(COLUMNS) and table.num_rows == 2
    assert math.isclose(table.column("score")[0].as_py(), -0.25)
