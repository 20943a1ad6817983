"""Summarise py-spy's raw (collapsed) stacks: where the worker's samples land, by own and total time."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "/broker/", "/adapters/", "/bench/", "/lib/python"):
        if marker in file:
            file = (marker.strip("/") + "/" if marker.startswith("/b") or marker.startswith("/a") else "") + file.split(
                marker, 1
            )[1]
            break
    return f"{match.group('func')} ({file})"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            frame_name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * c / samples, 1)) for name, c in counter.most_common(top)]

    return {"samples": samples, "own_pct": share(own), "total_pct": share(total)}


if __name__ == "__main__":
    result = summarise(Path(sys.argv[1]))
    print(f"{result['samples']} samples")
    for title in ("own_pct", "total_pct"):
        print(title)
        for name, pct in result[title]:
            print(f"  {pct:5.1f}%  {name}")
