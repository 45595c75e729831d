"""Bench report logic without an engine: ratios, the table, JSON round trip, plots, load-generator merging."""

from __future__ import annotations

from mlflowkit.bench import load
from mlflowkit.bench.report import Figure, plot, read_json, table, write_json


def test_ratio_is_figure_over_limit_and_absent_without_a_limit():
    assert Figure("tracking", "t", "c", 50.0, "rows/s", limit=200.0).ratio == 0.25
    assert Figure("tracking", "file", "c", 50.0, "rows/s").ratio is None
    assert Figure("artifacts", "proxied", "c", None, "MB/s", limit=5.0).ratio is None


def test_table_orders_sections_and_explains_missing_figures():
    figures = [Figure("serving", "any", "p50", 2.5, "ms", limit=0.5, limit_name="predict"),
               Figure("boot", "sqlite", "total", 3.0, "s"),
               Figure("artifacts", "proxied", "multipart on", None, "MB/s", note="not offered")]
    rows = table(figures).splitlines()
    assert rows[2].startswith("| boot | sqlite | total | 3.00 s |")
    assert "| n/a: not offered |" in rows[3]
    assert rows[4].endswith("| 0.5 ms (predict) | 5.00× |")


def test_json_round_trip_and_plots(tmp_path):
    figures = [Figure("tracking", "postgres-s3", "batch 10", 150.0, "rows/s", limit=2000.0, limit_name="store"),
               Figure("tracking", "sqlite", "batch 10", 900.0, "rows/s", note="the client is the store")]
    write_json(tmp_path / "r.json", {"machine": {"cores": 2}}, figures)
    meta, back = read_json(tmp_path / "r.json")
    assert back == figures and meta == {"machine": {"cores": 2}}
    written = plot(figures, tmp_path)
    assert [p.name for p in written] == ["tracking-rows-per-s.png"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_generator_merges_its_workers_and_counts_errors():
    args = load.parser().parse_args(["http", "http://127.0.0.1:9/", "--count", "3", "--procs", "2", "--timeout", "60"])
    result = load.run(args)
    assert result["calls"] == 6 and result["errors"] == 6 and "ConnectionError" in result["first_error"]
