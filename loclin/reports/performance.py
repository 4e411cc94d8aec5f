"""The Performance tables, rendered from the benchmarks' JSON records (never typed by hand).

``benchmarks/refresh_floor.py --json F`` and ``benchmarks/callback_overhead.py --json F`` write one
record each: the command, the machine, and every time in milliseconds. The tables print each time
as a ratio to the floor or the baseline measured in the same run, ``ratio = ms / floor_ms``, so a
slower or faster machine moves the milliseconds and leaves the ratios comparable.

``python -m loclin results`` puts the tables in docs/results.md and between docs/performance.md's
``<!-- performance:begin -->`` and ``<!-- performance:end -->`` lines.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

README_BEGIN, README_END = "<!-- performance:begin -->", "<!-- performance:end -->"
REFRESH_FILE, OVERHEAD_FILE = "refresh_floor.json", "callback_overhead.json"
HF_FILE = "hf_overhead.json"  # benchmarks/hf_overhead.py
GPT2_FILE, GPU_FOLDER = "gpt2_step.json", "gpu"  # benchmarks/gpt2_step.py; benchmarks/gpu.sh's records
# refresh_floor's rows, in the order of the table: (key in the record, column heading)
REFRESH_COLUMNS = (
    ("refresh", "refresh"),
    ("two products alone", "its two products alone"),
    ("gram rows", "Gram rows"),
    ("basis from Gram", "basis from Gram"),
    ("check (now)", "orthonormality check"),
    ("torch.linalg.svd", "`linalg.svd`"),
    ("torch.svd_lowrank", "`svd_lowrank`"),
)
STREAM_COLUMNS = (("stride 1: one step", "one step"), ("stride 1: form B", "form B"))


def machine() -> dict:
    """Where a benchmark ran: what its ratios depend on."""
    return {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **({"gpu": torch.cuda.get_device_name()} if torch.cuda.is_available() else {}),
    }


def write_record(path: Path, benchmark: str, record: dict) -> None:
    """``record`` with the benchmark's name, its command line and the machine, as JSON at ``path``."""
    whole = {"benchmark": benchmark, "command": " ".join(["python", *sys.argv]), "machine": machine(), **record}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(whole, indent=1) + "\n")


def ratio(ms: float, floor_ms: float) -> str:
    return f"{ms / floor_ms:.2f}×"


def refresh_table(record: dict) -> list[str]:
    """One row per D: the floor, then each part of a refresh and each SVD as a multiple of it, and
    the refresh as a multiple of its two products alone (the CPU target: at most 1.5×). A record
    that names its pages (loclin.runs.allocator) says so under the table."""
    head = "| D | floor ms (one read) | " + " | ".join(h for _, h in REFRESH_COLUMNS) + " | refresh ÷ two products |"
    lines = [head, "|" + "---|" * (3 + len(REFRESH_COLUMNS))]
    for row in record["dims"]:
        floor, ms = row["floor_ms"], row["ms"]
        cells = [ratio(ms[key], floor) for key, _ in REFRESH_COLUMNS]
        cells.append(f"{ms['refresh'] / ms['two products alone']:.2f}×")
        lines.append(f"| {row['dim']:,} | {floor:.2f} ({row['gb_per_s']:.1f} GB/s) | " + " | ".join(cells) + " |")
    if "pages" in record:
        lines += ["", f"Large tensors on {record['pages']} pages (`loclin.runs.allocator`, as `train.py` runs)."]
    return lines


def streaming_table(record: dict) -> list[str]:
    """``basis_stride: 1``: a step (Gram row, eigen-decomposition, spectrum, held-out captures) and
    B's formation, in window reads, and the two per step at the record's drift stride."""
    stride = record["drift_stride"]
    lines = [
        f"| D | one step | form B | per step, B every {stride} steps |",
        "|---|---|---|---|",
    ]
    for row in record["dims"]:
        floor, ms = row["floor_ms"], row["ms"]
        step, form = ms["stride 1: one step"], ms["stride 1: form B"]
        lines.append(
            f"| {row['dim']:,} | {ratio(step, floor)} | {ratio(form, floor)} | {ratio(step + form / stride, floor)} |"
        )
    return lines


def overhead_table(record: dict) -> list[str]:
    """Each variant's step time against the ``off`` baseline of the same run; the time inside its
    measurement hooks, median and mean per step, as 1 + hooks / (off's median or mean step), which
    separate runs' noise does not touch; the whole fit's wall time against off's (the measurement thread's
    last steps included); and its state memory."""
    variants = record["variants"]
    base = variants["off"]
    lines = [
        "| variant | median ms | × off | mean ms | × off | hooks ms, median step | 1 + hooks / off median "
        "| hooks ms, mean step | 1 + hooks / off mean | fit × off | state MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in variants.items():
        lines.append(
            f"| {name} | {r['median_ms']:.2f} | {r['median_ms'] / base['median_ms']:.3f} | {r['mean_ms']:.2f} | "
            f"{r['mean_ms'] / base['mean_ms']:.3f} | {r['hooks_median_ms']:.2f} | "
            f"{1 + r['hooks_median_ms'] / base['median_ms']:.3f} | {r['hooks_ms']:.2f} | "
            f"{1 + r['hooks_ms'] / base['mean_ms']:.3f} | {fit_ratio(r, base)} | {r['memory_mib']:.1f} |"
        )
    return lines


def fit_ratio(variant: dict, off: dict) -> str:
    """The fit's wall time against off's ("–" in records made before it was kept)."""
    return f"{variant['fit_s'] / off['fit_s']:.3f}" if "fit_s" in variant and "fit_s" in off else "–"


def breakdown_lines(record: dict) -> list[str]:
    """Where each variant's hook time goes, by callback, largest first."""
    lines = []
    for name, r in record["variants"].items():
        if r["hooks_ms"]:
            parts = sorted(r["by_callback_ms"].items(), key=lambda item: -item[1])
            shares = ", ".join(f"{key} {ms:.2f} ({ms / r['hooks_ms']:.0%})" for key, ms in parts)
            thread = f"; on the measurement thread, beside training: {r['thread_ms']:.2f}" if r.get("thread_ms") else ""
            lines.append(f"- {name}: {shares}{thread}")
    return lines


def describe(record: dict) -> str:
    m = record["machine"]
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return f"`{record['command']}` ({m['processor']}, {m['cpus']} CPUs{gpu}, torch {m['torch']})"


def performance_sections(root: Path, level: str = "##") -> list[str]:
    """The Performance tables from ``root/refresh_floor.json`` and ``root/callback_overhead.json``
    (either may be missing), as markdown lines."""
    parts: list[str] = []
    refresh_path, overhead_path = root / REFRESH_FILE, root / OVERHEAD_FILE
    if refresh_path.is_file():
        record = json.loads(refresh_path.read_text())
        parts += [
            f"{level} A refresh against this machine's floor",
            "",
            f"{describe(record)}: W = {record['window']}, k = {record['k']}, a refresh every "
            f"{record['stride']} vectors, one thread. The floor is one read of the window (W·D·4 bytes, "
            "the faster of X v and Xᵀu); every other column is a multiple of it.",
            "",
            *refresh_table(record),
            "",
            "`basis_stride: 1` (a Gram row per commit, B formed only when read), in window reads:",
            "",
            *streaming_table(record),
            "",
        ]
    if overhead_path.is_file():
        record = json.loads(overhead_path.read_text())
        parts += [
            f"{level} Step overhead of the callbacks",
            "",
            f"{describe(record)}: `{record['config']}`, {record['steps']} steps per variant, D = {record['dim']:,}.",
            "",
            *overhead_table(record),
            "",
            "Where the time in hooks goes (ms per step, share of the variant's hook time):",
            "",
            *breakdown_lines(record),
            "",
        ]
    if (root / HF_FILE).is_file():
        record = json.loads((root / HF_FILE).read_text())
        parts += [
            f"{level} The Hugging Face callback's step",
            "",
            f"{describe(record)}: GeometryTrainerCallback(window=32, k=8), one thread; each model trained without it, "
            "with it and without it again from one seed. The end of training (the summary and the figures) is a "
            "one-time cost, in plain steps.",
            "",
            "| model | D | steps | mean step × plain | median step × plain | plain again × plain | end of training |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {r['model']} | {r['dim']:,} | {r['steps']} | {r['mean_ratio']:.2f} | {r['median_ratio']:.2f} | "
                f"{r['off_again_ratio']:.2f} | {r['end_of_training_in_steps']:.0f} steps |"
                for r in record["models"]
            ),
            "",
        ]
    for path in sorted(root.glob(GPT2_FILE.replace(".json", "*.json"))):  # one per precision
        parts += gpt2_step_section(json.loads(path.read_text()), level)
    if (root / GPU_FOLDER).is_dir() and root.name != GPU_FOLDER:
        gpu = performance_sections(root / GPU_FOLDER, level + "#")
        parts += [f"{level} On a GPU (benchmarks/gpu.sh)", "", *gpu] if gpu else []
    return parts


def gpt2_step_section(record: dict, level: str) -> list[str]:
    """benchmarks/gpt2_step.py's record: each variant's step as a ratio to the plain step of the run."""
    off = record["variants"]["off"]
    rows = [
        f"| {name} | {row['median_ms']:.1f} | {row['median_ms'] / off['median_ms']:.3f} | {row['mean_ms']:.1f} | "
        f"{row['mean_ms'] / off['mean_ms']:.3f} | {row['memory_mib']:.0f} |"
        for name, row in record["variants"].items()
    ]
    return [
        f"{level} A GPT-2 step with GeometryMonitor ({record.get('precision', '32-true')})",
        "",
        f"{describe(record)}: GPT-2 {record['layers']}×{record['width']} from random weights, D = {off['dim']:,}, "
        f"{record['batch']}×{record['seq']} tokens on {record['device']}, {record['steps']} steps per variant "
        f"(the first {record['skip']} untimed); sketched: sketch_dim = {record['sketch_dim']:,}.",
        "",
        "| variant | median ms | × off | mean ms | × off | state MiB |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def replace_block(text: str, lines: list[str]) -> str:
    """``text`` with everything between the README's performance markers replaced by ``lines``."""
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"the README has no '{README_BEGIN}' … '{README_END}' block")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_BEGIN + "\n" + "\n".join(lines).strip() + "\n" + README_END + tail
