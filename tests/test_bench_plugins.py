"""`longlive bench-plugins` end to end: real daemons (random-small) with and without a plugin."""

from __future__ import annotations

import json

import pytest

from runtime.cli import main


def test_bench_plugins_writes_baseline_and_plugin(tmp_path, capsys):
    out = tmp_path / "plugins.json"
    argv = ["bench-plugins", "--threads", "1", "--frames", "12", "--warmup", "3", "--plugin", "metrics",
            "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["command"] == "longlive " + " ".join(argv)
    assert result["model"] == "random-small" and result["frames"] == 12
    base = result["baseline"]
    assert base["fps_before"] > 0 and base["fps_after"] > 0
    assert base["fps"] == pytest.approx((base["fps_before"] + base["fps_after"]) / 2)
    assert base["rss_peak_mib"] > 0
    assert list(result["plugins"]) == ["metrics"]
    metrics = result["plugins"]["metrics"]
    assert metrics["fps"] > 0 and metrics["rss_peak_mib"] > 0
    assert metrics["ratio"] == pytest.approx(metrics["fps"] / base["fps"])
    assert "metrics" in metrics["plugins"]  # the daemon's own status: the plugin was loaded, not disabled
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == ["baseline", "metrics", "baseline", "baseline"]


def test_unknown_plugin_is_refused_before_any_daemon_starts(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench-plugins", "--plugin", "recorderr"])
    assert exc.value.code == 2
    assert "invalid choice: 'recorderr'" in capsys.readouterr().err
