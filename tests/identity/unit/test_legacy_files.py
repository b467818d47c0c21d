"""The legacy files the import's tests and benchmark read: their overlap is what they say."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from loyalty_devstack import legacy_files as lf


@pytest.mark.parametrize("overlap", [0.0, 0.3, 1.0])
def test_the_overlap_is_the_share_of_rows_of_people_in_two_units(overlap: float) -> None:
    truth = lf.accounts(3_000, overlap=overlap, seed=3)
    assert truth.rows() == 3_000
    shared_rows = sum(len(a) for a in truth.accounts.values() if len(a) > 1)
    assert shared_rows == pytest.approx(3_000 * overlap, abs=2)
    for accounts in truth.accounts.values():
        assert len({a.unit for a in accounts}) == len(accounts)  # once per unit


def test_the_same_seed_makes_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    first = lf.write(lf.accounts(500, seed=5), tmp_path / "a")
    again = lf.write(lf.accounts(500, seed=5), tmp_path / "b")
    other = lf.write(lf.accounts(500, seed=6), tmp_path / "c")
    for unit in lf.UNITS:
        assert first[unit].read_bytes() == again[unit].read_bytes()
        assert first[unit].read_bytes() != other[unit].read_bytes()


def test_each_unit_exports_in_its_own_shape_and_one_phone_joins_a_persons_rows(
    tmp_path: Path,
) -> None:
    truth = lf.accounts(900, overlap=0.3, seed=9)
    files = lf.write(truth, tmp_path)
    mall = list(csv.DictReader(io.StringIO(files["mall"].read_bytes().decode("gb18030"))))
    hotel = [json.loads(line) for line in files["hotel"].read_text("utf-8").splitlines()]
    cinema = list(csv.DictReader(io.StringIO(files["cinema"].read_text("utf-8"))))
    assert len(mall) + len(hotel) + len(cinema) == 900
    assert set(mall[0]) == set(lf.MALL_HEADER) and set(hotel[0]) == set(lf.HOTEL_KEYS)
    phones = Counter(
        [r["手机号"] for r in mall]
        + [r["mobile"].removeprefix("+86 ") for r in hotel]
        + [r["phone"] for r in cinema]
    )
    assert sum(1 for n in phones.values() if n == 2) == truth.shared()
    assert len(phones) == truth.people
    for unit, mapping in lf.MAPPINGS.items():
        header = {"mall": lf.MALL_HEADER, "hotel": lf.HOTEL_KEYS, "cinema": lf.CINEMA_HEADER}[unit]
        assert set(mapping.values()) <= set(header)
