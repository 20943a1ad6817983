"""Fixed-width and custody CSV refuse a gender or ethnicity code their mapping lacks instead of dropping it."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import get_adapter
from adapters.fixed_width.inbound import encode_record, load_layout

CUSTODY = Path(__file__).resolve().parents[2] / "adapters" / "custody_csv" / "fixtures" / "force-a-custody.csv"


def _extract(gender: str, ethnicity: str) -> bytes:
    layout = load_layout("rms-mainframe-v1")
    lines = [
        encode_record(layout, "CR", {"crime_ref": "FB/000901/26", "recorded_date": "20260113"}),
        encode_record(
            layout,
            "NM",
            {
                "crime_ref": "FB/000901/26",
                "nominal_seq": 1,
                "role": "V",
                "family": "Specimen",
                "gender": gender,
                "ethnicity": ethnicity,
            },
        ),
    ]
    return "".join(line + "\n" for line in lines).encode("ascii")


@pytest.mark.parametrize(
    ("gender", "ethnicity", "code"), [("Q", "W1", "gender_unknown"), ("1", "ZZ", "ethnicity_unknown")]
)
def test_fixed_width_refuses_a_code_the_mapping_lacks(gender, ethnicity, code):
    (result,) = get_adapter("fixed-width").translate(_extract(gender, ethnicity), "force-b")

    assert not isinstance(result, dict)
    assert code in [e.code for e in result.errors]


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [(b",Male,B2,", b",Robot,B2,", "gender_unknown"), (b",Male,B2,", b",Male,Q7,", "ethnicity_unknown")],
)
def test_custody_csv_refuses_a_code_the_mapping_lacks(old, new, code):
    source = CUSTODY.read_bytes()
    assert old in source

    results = list(get_adapter("custody-csv").translate(source.replace(old, new, 1), "force-a-custody"))

    assert code in [e.code for r in results if not isinstance(r, dict) for e in r.errors]
    assert sum(isinstance(r, dict) for r in results) == 1  # the other row still goes
