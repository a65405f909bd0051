"""bench/write_results.py on a hand-made results file: table contents, ratios, bad lines."""
import importlib.util
import json
import re
from pathlib import Path

import pytest

from igm_fast.io import InputError

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "write_results.py"
spec = importlib.util.spec_from_file_location("write_results", SCRIPT)
write_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(write_results)

ROWS = [
    # mdff fwd, one shape: eager 10 ms, triton 2.5 ms, sdpa 5 ms
    {"op": "mdff_highpass fwd", "shape": "B=128 L=750 D=256 bf16", "impl": "triton", "ms": 2.5,
     "device": "NVIDIA H100 80GB HBM3", "peak_mb": 96.0},
    {"op": "mdff_highpass fwd", "shape": "B=128 L=750 D=256 bf16", "impl": "eager", "ms": 10.0,
     "device": "NVIDIA H100 80GB HBM3", "peak_mb": 1200.0},
    {"op": "mdff_highpass fwd", "shape": "B=128 L=750 D=256 bf16", "impl": "sdpa", "ms": 5.0,
     "device": "NVIDIA H100 80GB HBM3", "peak_mb": 100.0},
    # another op with a measure of its own and only two implementations
    {"op": "adaln_modulate fwd", "shape": "B=256 L=750 D=256", "impl": "triton", "ms": 0.5, "gbps": 2400.0,
     "device": "NVIDIA H100 80GB HBM3"},
    {"op": "adaln_modulate fwd", "shape": "B=256 L=750 D=256", "impl": "eager", "ms": 2.0, "gbps": 600.0,
     "device": "NVIDIA H100 80GB HBM3"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def table_row(markdown, first_cells):
    prefix = "| " + " | ".join(first_cells) + " |"
    (line,) = [line for line in markdown.splitlines() if line.startswith(prefix)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_tables_with_hand_computed_ratios(tmp_path):
    output = tmp_path / "RESULTS.md"
    write_results.main([str(write_jsonl(tmp_path / "r.jsonl", ROWS)), "-o", str(output), "--tests", "5 passed"])
    text = output.read_text()

    assert text.startswith("# Benchmark results")
    assert "- tests: 5 passed" in text
    assert "- devices in the rows: NVIDIA H100 80GB HBM3" in text
    assert "## mdff_highpass fwd" in text and "## adaln_modulate fwd" in text
    assert "| shape | impl | ms | x vs triton | x vs eager | x vs sdpa | peak_mb |" in text
    assert "| shape | impl | ms | x vs triton | x vs eager | gbps |" in text

    # x vs IMPL = IMPL's ms / this row's ms
    assert table_row(text, ["B=128 L=750 D=256 bf16", "triton"]) == [
        "B=128 L=750 D=256 bf16", "triton", "2.5", "", "4.00", "2.00", "96"]
    assert table_row(text, ["B=128 L=750 D=256 bf16", "eager"])[3:6] == ["0.25", "", "0.50"]
    assert table_row(text, ["B=256 L=750 D=256", "triton"]) == ["B=256 L=750 D=256", "triton", "0.5", "", "4.00", "2400"]


@pytest.mark.parametrize("line, words", [
    ("{not json", "r.jsonl:2: invalid JSON"),
    ("[1, 2]", "r.jsonl:2: expected a JSON object, found list"),
    ('{"op": "x", "shape": "s", "impl": "i"}', "r.jsonl:2: row lacks ['ms']"),
    ('{"op": "x", "shape": "s", "impl": "i", "ms": "fast"}', "r.jsonl:2: 'ms' must be a positive number"),
])
def test_bad_line_names_file_and_line(tmp_path, line, words):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + line + "\n")
    with pytest.raises(InputError, match=re.escape(words)):
        write_results.load_rows(path)


def test_empty_or_missing_file(tmp_path):
    with pytest.raises(InputError, match="no benchmark rows"):
        write_results.load_rows(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(InputError, match="cannot read"):
        write_results.load_rows(tmp_path / "absent.jsonl")
