"""A tiny recovery run killed (SIGKILL, or Ctrl-C) in its train and degrade phases: mid-step, in a
checkpoint's write, inside the static bases, around the renames of the train phase's end; each
resumed to the uninterrupted run's summary, number for number (tests/kill_anywhere.py holds the
instants and the check)."""

import pytest
from kill_anywhere import EARLY, KILLS, check_kills

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one


def test_a_run_killed_early_resumes_to_the_same_numbers(tmp_path):
    check_kills(tmp_path, KILLS[:EARLY])
