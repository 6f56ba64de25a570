"""The README's scripting section: its example runs as written, and its column table is the one list of columns."""

import re
import subprocess
import sys
from pathlib import Path

from emulator.engine.columns import COLUMNS, COST_COLUMNS, COST_METRICS, METRICS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def example() -> str:
    after = README.split("<!-- api-example -->", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_the_readme_api_example_runs_as_written():
    out = subprocess.run([sys.executable, "-c", example()], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "requests took over a minute" in out.stdout and "latency_p99_s" in out.stdout


def test_the_readme_column_table_is_the_shared_list():
    table = README.split("| column | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([a-z0-9_A-Z]+)` \| (.+) \|$", table, re.M)
    assert [c for c, _ in documented] == list(COLUMNS)
    assert dict(documented) == {c: meaning for c, _, meaning in METRICS}


def test_the_readme_cost_table_is_the_shared_list():
    table = README.split("| cost column | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([a-z0-9_A-Z]+)` \| (.+) \|$", table, re.M)
    assert [c for c, _ in documented] == list(COST_COLUMNS)
    assert dict(documented) == {c: meaning for c, _, meaning in COST_METRICS}


def test_simulate_and_sweep_tables_share_the_metric_columns(tmp_path):
    from emulator import simulate
    from emulator.engine.sweep import columns, load_sweep

    result = simulate(ROOT / "configs" / "pods.yaml")
    assert list(result.summary.columns[6:6 + len(COLUMNS)]) == list(COLUMNS)
    spec, _, _ = load_sweep(ROOT / "configs" / "sweep-pods.yaml")
    assert columns(spec)[-len(COLUMNS):] == list(COLUMNS)
