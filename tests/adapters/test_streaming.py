"""Streaming: peak memory does not grow with the size of the input."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from adapters import get_adapter
from adapters.fixed_width.inbound import encode_record, load_layout

STREET_HEADER = (
    "Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,LSOA name,"
    "Crime type,Last outcome category,Context\n"
)


def _peak(adapter: str, path: Path, mapping: str) -> tuple[int, int]:
    tracemalloc.start()
    count = sum(1 for result in get_adapter(adapter).translate(path, mapping) if isinstance(result, dict))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return count, peak


def _street_file(path: Path, rows: int) -> Path:
    with path.open("w") as handle:
        handle.write(STREET_HEADER)
        for n in range(rows):
            handle.write(
                f"{n:064x},2017-01,City of London Police,City of London Police,-0.1,51.5,"
                "On or near Somewhere,E01000001,City of London 001A,Burglary,Under investigation,\n"
            )
    return path


def test_csv_memory_stays_flat_when_the_input_grows_tenfold(tmp_path):
    small = _peak("police-uk-csv", _street_file(tmp_path / "small.csv", 500), "city-of-london")
    large = _peak("police-uk-csv", _street_file(tmp_path / "large.csv", 5_000), "city-of-london")

    assert (small[0], large[0]) == (500, 5_000)
    assert large[1] < small[1] * 1.5 + 256 * 1024


def test_fixed_width_memory_stays_flat_when_the_input_grows_tenfold(tmp_path):
    layout = load_layout("rms-mainframe-v1")

    def extract(name: str, crimes: int) -> Path:
        path = tmp_path / name
        with path.open("wb") as handle:
            for n in range(crimes):
                ref = f"FA/{n:06d}/26"
                handle.write(
                    encode_record(layout, "CR", {"crime_ref": ref, "recorded_date": "20260101"}).encode("cp037")
                )
                handle.write(
                    encode_record(layout, "OF", {"crime_ref": ref, "offence_seq": 1, "offence_code": "THEFT01"}).encode(
                        "cp037"
                    )
                )
        return path

    small = _peak("fixed-width", extract("small.ebc", 300), "force-a")
    large = _peak("fixed-width", extract("large.ebc", 3_000), "force-a")

    assert (small[0], large[0]) == (300, 3_000)
    assert large[1] < small[1] * 1.5 + 256 * 1024
