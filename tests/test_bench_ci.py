"""bench/ci_bench.py reads pytest's own summary line, whatever the counts it names."""

from __future__ import annotations

import pytest

from bench.ci_bench import pytest_summary


def test_the_last_summary_line_gives_the_counts_and_seconds():
    output = ("collected 3 items\n....\n=== 1 passed in 0.5s ===\n"
              "============ 1076 passed, 2 skipped, 1 xfailed in 389.93s (0:06:29) ============\n")
    assert pytest_summary(output) == ("1076 passed, 2 skipped, 1 xfailed", 389.93)


def test_output_without_a_summary_is_refused():
    with pytest.raises(ValueError, match="no pytest summary"):
        pytest_summary("ERROR: usage: pytest [options]\n")
