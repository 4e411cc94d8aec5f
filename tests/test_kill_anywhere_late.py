"""A tiny recovery run killed (SIGKILL, or Ctrl-C) later: a Ctrl-C inside the static bases, the
recovery, the prefix basis, the constrained re-run and the summary's write; each resumed to the
uninterrupted run's summary, number for number (tests/kill_anywhere.py holds the instants and the
check)."""

import pytest
from kill_anywhere import EARLY, KILLS, check_kills

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one


def test_a_run_killed_late_resumes_to_the_same_numbers(tmp_path):
    check_kills(tmp_path, KILLS[EARLY:])
