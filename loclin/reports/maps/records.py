"""A map's records: every finished point of a folder of sweeps (C4), of steering runs (C6, C7) or of
drift seeds (C1, C3), reduced to a few kB each; what one record is a measurement of; and the merge
of published records with new ones, which never replaces a point by one made by something else.
"""

from __future__ import annotations

import json
from pathlib import Path

from loclin.claims.c3 import c3_record, is_drift_run
from loclin.protocols.registry import protocol_of_summary
from loclin.runs.rundir import RunDirError

CELLS_FILE = "cells.json"


def is_map(folder: Path) -> bool:
    """A folder of sweeps (C4) or of steering runs (C6), or a folder holding their records."""
    from loclin.runs.grid import MANIFEST

    if (folder / CELLS_FILE).is_file():
        return True
    return not (folder / MANIFEST).is_file() and (
        any(folder.glob(f"*/{MANIFEST}")) or any(folder.glob("*/*/version_*/summary.json"))
    )


def c4_record(sweep: str, point: dict, summary: dict) -> dict:
    norms = summary.get("curves", {}).get("recovery.norms", {})
    metrics = {
        k: v["value"]
        for k, v in summary["metrics"].items()
        if k.startswith("recovery.") and isinstance(v.get("value"), (int, float))
    }
    if norms.get("go_back"):
        metrics.setdefault("recovery.delta_over_go_back", norms["delta"] / norms["go_back"])
        metrics.setdefault("recovery.delta_norm", norms["delta"])
        metrics.setdefault("recovery.go_back_norm", norms["go_back"])
    record = {"map": "c4", "sweep": sweep, "cell": point["cell"], "seed": point["seed"], "metrics": metrics}
    return {**record, **identity_of(summary.get("run_dir"), summary.get("torch_threads"))}


def identity_of(run_dir: str | Path | None, threads: int | None = None) -> dict:
    """The record's digest and made_by (loclin.runs.identity), where its run directory is at hand."""
    from loclin.runs.identity import run_identity

    return run_identity(run_dir, threads) if run_dir and Path(run_dir).is_dir() else {}


def c6_record(name: str, summary: dict) -> dict:
    keep = (
        "cos_delta_caa",
        "cos_delta_caa_interval",
        "cos_delta_caa_prompt_end",
        "cos_adam_caa",
        "shuffled_p95",
        "random_p95",
    )
    layers = summary["curves"]["steer.layers"]
    return {
        "map": "c6",
        "name": name,
        "model": summary["model"],
        "source": summary["source"],
        "stepped": summary["stepped"],
        "bos": bool(summary.get("special_prefix")),
        "seed": summary["seed"],
        "heldout_items": summary.get("items", {}).get("heldout"),
        "metrics": {
            k: {"value": v["value"], **{key: v[key] for key in ("interval", "band", "reason") if key in v}}
            for k, v in summary["metrics"].items()
        },
        "layers": {k: layers[k] for k in keep if k in layers},
        "steered_layer": summary["curves"]["steer.curves"]["layer"],
        **identity_of(summary.get("run_dir")),
    }


def collect(folder: Path) -> list[dict]:
    """The records of a map folder: every finished point of every sweep in it (C4), or every
    steering run under it (C6); a folder holding ``cells.json`` gives those."""
    if (folder / CELLS_FILE).is_file():
        return read_records(folder / CELLS_FILE, "map")
    from loclin.reports.sweep_report import point_summaries
    from loclin.runs.grid import MANIFEST

    records = []
    for manifest_file in sorted(folder.glob(f"*/{MANIFEST}")):
        # "rank+parent" joins "rank": one axis whose points were launched two ways (full runs, forks)
        sweep = manifest_file.parent.name.split("+")[0]
        for point, summary in point_summaries(manifest_file.parent, json.loads(manifest_file.read_text())):
            if summary is not None and not summary.get("diverged"):
                records.append(c4_record(sweep, point, summary))
                continue
            # diverged, failed or not run yet: named in the verdict, never averaged
            record = {"map": "c4", "sweep": sweep, "cell": point["cell"], "seed": point["seed"], "missing": True}
            if summary is not None:
                record.update(diverged=summary["diverged"], **identity_of(summary.get("run_dir")))
            records.append({**record, "metrics": {}})
    for summary_file in sorted(folder.glob("*/*/version_*/summary.json")):
        summary = json.loads(summary_file.read_text())
        if protocol_of_summary(summary) == "steer":
            records.append(c6_record(summary_file.parents[2].name, summary))
        elif is_drift_run(summary):  # a C3 seed: its folder names the system and seed
            records.append({**c3_record(summary_file.parents[2].name, summary), **identity_of(summary.get("run_dir"))})
    if not any(not r.get("missing") for r in records):
        raise RunDirError(f"map '{folder}' has no finished point yet")
    return records


def record_key(record: dict) -> tuple:
    """What one record is a measurement of: a C4 point (sweep, cell, seed) or a C6 run (its name)."""
    if record["map"] in ("c3", "c6"):
        return (record["map"], record["name"])
    return ("c4", record["sweep"], json.dumps(record["cell"], sort_keys=True), record["seed"])


def merge_records(earlier: list[dict], new: list[dict], separate: bool = False) -> list[dict]:
    """``earlier`` (a published cells.json) with ``new`` (this folder's records). A new record
    replaces the earlier one of the same point only when both were made by the same thing (equal
    digests, loclin.runs.identity), and a missing point never replaces a finished one; points only in
    ``earlier`` are kept. A point of the same name made by something else (another model, parent,
    config or loclin version) is a RunDirError naming the difference, or with ``separate`` a cell
    of its own (its label carries the digest). The order: earlier's, then new points."""
    merged = {record_key(r): r for r in earlier}
    for record in new:
        key = record_key(record)
        old = merged.get(key)
        if old is not None and old.get("digest") != record.get("digest"):
            if not separate:
                from loclin.runs.identity import difference

                point = " ".join(map(str, key[1:]))
                raise RunDirError(
                    f"--merge: {point} is published from another run ({difference(old, record)}); nothing was "
                    "written: publish it as its own cell with --separate, or into another map"
                )
            record = {**record, "variant": (record.get("digest") or "no-digest")[:8]}
            key = (*key, record["variant"])
            old = merged.get(key)
        if not (record.get("missing") and old is not None and not old.get("missing")):
            merged[key] = record
    return list(merged.values())


def read_records(path: Path, what: str = "--merge") -> list[dict]:
    """A cells.json: a list of map records, or RunDirError in one line (``what`` names the use)."""
    if not path.is_file():
        raise RunDirError(f"{what}: records file '{path}' not found")
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunDirError(f"{what}: '{path}' is not valid JSON ({error})") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and r.get("map") in ("c3", "c4", "c6") and isinstance(r.get("metrics"), dict)
        for r in records
    ):
        raise RunDirError(
            f"{what}: '{path}' is JSON but not a map's records (a list of c3/c4/c6 records, as cells.json)"
        )
    return records
