"""Shared plumbing for train.py and analyze.py: config, run directories, summaries, plots."""
