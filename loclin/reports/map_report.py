"""A regime map's report: its records (loclin.reports.maps.records) drawn into the tables, verdicts and figures
of each claim they hold (C1–C4 from sweeps and drift seeds, C6 and C7 from steering runs).

    python analyze.py runs/maps/c4_lora        # a folder of sweeps (docs/maps/c4_*.sh)
    python analyze.py runs/maps/c6_steering    # a folder of steering runs (docs/maps/c6_steering.sh)

The records (``cells.json``, a few kB a point) are what docs/results keeps of a map, so the
results page redraws the same tables and figures without the run directories.
"""

from __future__ import annotations

import json
from pathlib import Path

from loclin.claims.c2 import c2_table
from loclin.claims.c3 import c3_figures, c3_table, c3_verdict
from loclin.claims.c4_table import decider_figures, decider_table
from loclin.claims.c7 import c7_table, has_power_records
from loclin.reports.maps.c4 import c4_cells, c4_table, c4_verdict, capture_lengths, recovered
from loclin.reports.maps.c4_figures import c4_figures
from loclin.reports.maps.c6 import c6_figures, c6_table, c6_verdict
from loclin.reports.maps.records import CELLS_FILE, collect, merge_records, read_records
from loclin.reports.tables import render_markdown, render_text


def section(
    title: str,
    table: list[list[str]],
    intro: str = "",
    verdict: str = "",
    figures: list[tuple[str, str]] = (),
    link: str = "",
) -> list[str]:
    """One claim's Markdown: its title, an optional sentence, the table, the verdict and the figures."""
    parts = [title, ""] + ([intro, ""] if intro else []) + [render_markdown(table), ""]
    parts += [f"**Verdict.** {verdict}", ""] if verdict else []
    return parts + [item for name, caption in figures for item in (f"![{caption}]({link}{name})", "")]


C2_INTRO = (
    "Per recovered cell over its seeds [95% t-interval]: the best of S1–S5 (built at θ*, taken per seed), S0 (the "
    "first recovery steps' preconditioned gradients at θ_0), their paired difference, P8 and a random basis, all at "
    "equal k (loclin.claims.c2)."
)
C4_DECIDED_INTRO = (
    "Per cell and recovery length T (mean over seeds, [95% t-interval] where there are two or more; differences are "
    "paired within runs). Readings and words come from the rules of loclin.claims.c4 (docs/c4_decided.md)."
)
C7_INTRO = (
    "Slopes d margin / dα at α = 0 over the held-out items [95% bootstrap], the null band of 20 random and 20 "
    "shuffled-label directions, the paired difference, the smallest slope the items detect at 80% power, and the "
    "ratio only where v̂'s own slope interval excludes 0 (loclin.claims.c7)."
)
C3_INTRO = (
    "r(L): overlap of half-window bases L steps apart ÷ the noise ceiling (mean over seeds [95% t-interval]); frozen "
    "θ: the same run's phase at lr 0 on fresh batches, which cannot drift (loclin.claims.c3)."
)


def map_sections(records: list[dict], out: Path, heading: str = "##", link: str = "") -> tuple[list[str], str]:
    """Markdown parts (tables, verdict, figures written into ``out`` and linked as ``link`` +
    name) and the plain-text tables."""
    out.mkdir(parents=True, exist_ok=True)
    parts, tables = [], []
    c4, c6, c3 = ([r for r in records if r["map"] == kind] for kind in ("c4", "c6", "c3"))
    if c4:
        tables.append(c4_table(c4))
        parts += section(
            f"{heading} C4: prefix capture of the recovery displacement",
            tables[-1],
            verdict=c4_verdict(c4),
            figures=c4_figures(c4, out),
            link=link,
        )
        cells, lengths = c4_cells(c4), capture_lengths(c4)
        static = c2_table({label: group for label, group in cells.items() if recovered(group)})
        if len(static) > 1:
            tables.append(static)
            parts += section(f"{heading}# C2: static bases at θ* against a basis at θ_0", static, C2_INTRO)
        deciders = decider_table(cells, lengths)
        if len(deciders) > 1:
            tables.append(deciders)
            figures = decider_figures(cells, lengths, out)
            title = f"{heading}# C4 decided: a special prefix or a short recovery"
            parts += section(title, deciders, C4_DECIDED_INTRO, figures=figures, link=link)
    if c6:
        tables.append(c6_table(c6))
        title = f"{heading} C6: the one-step activation shift against CAA"
        parts += section(title, tables[-1], verdict=c6_verdict(c6), figures=c6_figures(c6, out), link=link)
    if c6 and has_power_records(c6):
        tables.append(c7_table(c6))
        parts += section(
            f"{heading} C7: does δ̂ steer as well as v̂? Slopes with their nulls and power", tables[-1], C7_INTRO
        )
    if c3:
        tables.append(c3_table(c3))
        title = f"{heading} C3: drift of the useful basis against the noise ceiling"
        parts += section(title, tables[-1], C3_INTRO, c3_verdict(c3), c3_figures(c3, out), link)
    return parts, "\n\n".join(render_text(table) for table in tables)


def map_verdicts(records: list[dict]) -> dict[str, str]:
    """The verdict paragraph of each claim a map's records hold."""
    verdicts = {}
    c4 = [r for r in records if r["map"] == "c4"]
    c6 = [r for r in records if r["map"] == "c6"]
    if any(not r.get("missing") for r in c4):
        verdicts["C4"] = c4_verdict(c4)
    if c6:
        verdicts["C6"] = c6_verdict(c6)
    c3 = [r for r in records if r["map"] == "c3"]
    if c3:
        verdicts["C3"] = c3_verdict(c3)
    return verdicts


def verdict_changes(before: list[dict], after: list[dict]) -> list[str]:
    """Lines saying how merging changed a published verdict (none where it did not)."""
    old, new = map_verdicts(before), map_verdicts(after)
    return [
        f"[loclin] {claim} verdict changes:\n  before: {old.get(claim, '(none)')}\n  after:  {new.get(claim, '(none)')}"
        for claim in sorted(set(old) | set(new))
        if old.get(claim) != new.get(claim)
    ]


def build_map_report(folder: Path, out: Path, merge: Path | None = None, separate: bool = False) -> str:
    """The map's tables, verdict and figures into ``out``; ``merge``: an earlier cells.json whose
    points this folder does not hold (runs made on another machine) are kept (merge_records). A
    change to the earlier records' verdict is printed, before and after."""
    records = collect(folder)
    if merge is not None:
        earlier = read_records(merge)
        records = merge_records(earlier, records, separate)
        for line in verdict_changes(earlier, records):
            print(line)
    parts, text = map_sections(records, out)
    (out / CELLS_FILE).write_text(json.dumps(records, indent=1))
    (out / "report.md").write_text("\n".join([f"# loclin map report: `{folder}`", "", *parts]))
    return text
