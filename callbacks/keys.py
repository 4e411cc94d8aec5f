"""The summary keys the measurement callbacks write, as constants: the producers write with them,
and the reports, the protocol registry and the tests read with them. Nothing is imported here, so
a report reads a summary without importing torch or Lightning."""

RECOVERY_TABLE = "recovery.table"  # curves: {basis name: capture, projected accuracy, ...} (RecoveryCallback)
RECOVERY_PREFIX = "recovery.prefix"  # curves: P_m capture against m, by recovery length (RecoveryCallback)
RANDOM_SEARCH_POINTS = "random_search.points"  # curves: one record per probed θ_s (RandomSearchCallback)
RANDOM_SEARCH_WIDTHS = "random_search.widths"  # curves: one row per model width (run_random_search)
