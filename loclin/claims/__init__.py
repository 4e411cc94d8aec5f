"""Deciding the paper's claims: one module per claim, each a tested rule on interval bounds that
turns published records into a verdict word (*supported*, *refuted*, *regime-dependent*,
*undecided*; docs/science.md 11), and the scorecard that gathers them.

- ``c1``: held-out capture and top-k energy against chance (C3 map records);
- ``c2``: static bases at θ* against S0 at θ_0 (C4 map records);
- ``c3``: drift ratio at disjoint lags against 0.5 and the frozen-θ null (C3 map records);
- ``c4``: P8 against 0.77, a short recovery against a special prefix, the function-space ablations;
  ``c4_table``: their per-cell table, best-cell selection and figures (C4 map records);
- ``c5``: P(improve) at the largest D of a random-search dimension sweep (run summaries);
- ``c7``: δ̂ : v̂ once v̂ steers beyond its null band (steering records);
- ``scorecard``: one row per claim and system, at the top of docs/results.md.
"""
