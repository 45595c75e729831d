"""Bench results: figures with the limit they are compared to, as JSON, a markdown table and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Sections in the order the table and the plots show them.
SECTIONS = {
    "boot": "Boot: `up` to healthy, fresh volumes",
    "tracking": "Tracking: log_batch metric rows/s",
    "floor": "Per-request floor: p50 of a trivial GET",
    "artifacts": "Artifacts: MB/s and small-file latency",
    "serving": "Serving: /invocations",
    "footprint": "Footprint",
    "tuning": "Server defaults vs the kit's (postgres-s3)",
    "replicas": "Replicated topologies: N replicas of each pool vs 1 (ratio: N over 1)",
    "recovery": "Recovery from faults under load, clients without retries",
}
HIGHER_IS_BETTER = {"rows/s", "MB/s", "req/s"}


@dataclass(frozen=True)
class Figure:
    """One measured value, and (where there is one) the limit measured in the same run it is compared to."""

    section: str
    topology: str
    case: str
    value: float | None
    unit: str
    limit: float | None = None
    limit_name: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """value / limit: below 1 is a share of the limit's throughput, above 1 a multiple of its time."""
        if self.value is None or not self.limit:
            return None
        return self.value / self.limit


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(figures: Iterable[Figure]) -> str:
    """A markdown table, one row per figure, grouped by section."""
    rows = ["| section | topology | case | figure | limit (same run) | ratio |", "|---|---|---|---|---|---|"]
    ordered = sorted(figures, key=lambda f: list(SECTIONS).index(f.section) if f.section in SECTIONS else 99)
    for f in ordered:
        limit = f"{_number(f.limit, f.unit)} ({f.limit_name})" if f.limit is not None else ""
        ratio = f"{f.ratio:.2f}×" if f.ratio is not None else ""
        figure = _number(f.value, f.unit) if f.value is not None else f"n/a: {f.note}"
        rows.append(f"| {f.section} | {f.topology} | {f.case} | {figure} | {limit} | {ratio} |")
    return "\n".join(rows)


def write_json(path: Path, meta: dict, figures: list[Figure]) -> None:
    path.write_text(json.dumps({**meta, "figures": [{**asdict(f), "ratio": f.ratio} for f in figures]}, indent=1))


def read_json(path: Path) -> tuple[dict, list[Figure]]:
    data = json.loads(path.read_text())
    figures = [Figure(**{k: v for k, v in item.items() if k != "ratio"}) for item in data.pop("figures")]
    return data, figures


def plot(figures: list[Figure], out_dir: Path) -> list[Path]:
    """One horizontal bar chart per section: each figure as a bar, its limit as a pale bar behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for section, title in SECTIONS.items():
        chosen = [f for f in figures if f.section == section and f.value is not None]
        for unit in sorted({f.unit for f in chosen}):
            group = [f for f in chosen if f.unit == unit]
            labels = [f"{f.topology} · {f.case}" for f in group]
            height = max(2.0, 0.38 * len(group) + 1.2)
            fig, ax = plt.subplots(figsize=(9, height))
            positions = range(len(group))
            limits = [f.limit if f.limit is not None else 0 for f in group]
            if any(limits):
                ax.barh(positions, limits, color="#d0d7e2", label="limit (same run)")
            ax.barh(positions, [f.value or 0.0 for f in group], height=0.5, color="#2f6db5", label="measured")
            for pos, f in zip(positions, group, strict=True):
                text = _number(f.value) + (f"  ({f.ratio:.2f}× limit)" if f.ratio is not None else "")
                ax.text(f.value or 0.0, pos, " " + text, va="center", fontsize=8)
            ax.set_yticks(list(positions), labels, fontsize=8)
            ax.invert_yaxis()
            better = "higher is better" if unit in HIGHER_IS_BETTER else "lower is better"
            ax.set_xlabel(f"{unit} ({better})")
            ax.set_title(title, fontsize=10)
            if any(limits):
                ax.legend(fontsize=8, loc="lower right")
            ax.margins(x=0.25)
            fig.tight_layout()
            path = out_dir / f"{section}-{unit.replace('/', '-per-').replace(' ', '')}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written
