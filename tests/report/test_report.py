"""``lit-airlora report`` on real tiny runs: the numbers it prints are the ones the runs logged."""

from __future__ import annotations

import re

import pytest
from lightning.pytorch.loggers import TensorBoardLogger

from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
from lit_airlora.callbacks.rank_policy import RankPolicyCallback
from lit_airlora.channel.fading import RayleighBlock
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.cli import main
from lit_airlora.policy.fixed import FixedRank
from lit_airlora.report.runs import load_run
from tests.helpers import tiny_fit

PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_llama_dir, tokenizer):
    """An ideal run and an over-the-air run with a rank policy, 2 rounds each."""
    root = tmp_path_factory.mktemp("report_runs")
    modules = {}
    for name, callbacks in (
        ("ideal", []),
        (
            "aircomp",
            [
                OverTheAirAggregation(large_scale=FixedSNR(5.0), fading=RayleighBlock()),
                RankPolicyCallback(FixedRank(2)),
            ],
        ),
    ):
        logger = TensorBoardLogger(str(root / "runs"), name=name)
        _, modules[name] = tiny_fit(
            root / name, tiny_llama_dir, tokenizer, max_epochs=2, callbacks=callbacks, logger=logger
        )
    return root / "runs", modules


def test_runs_are_read_by_round(two_runs):
    runs_dir, modules = two_runs
    run = load_run(runs_dir / "aircomp" / "version_0")
    # Round 0 (before training) and one value after each of the 2 rounds.
    assert run.rounds("val/perplexity") == [0, 1, 2]
    assert run.values("val/perplexity") == pytest.approx(modules["aircomp"].perplexity_history)
    assert sum(run.values("comm/uplink_bits")) == pytest.approx(
        modules["aircomp"].ledger.total_bits
    )
    assert run.values("policy/mean_rank") == [2.0, 2.0]
    assert run.images["policy/rank_heatmap"].startswith(PNG_MAGIC)


def test_report_overlays_runs_and_agrees_with_the_logs(two_runs, tmp_path, capsys):
    runs_dir, modules = two_runs
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs_dir), "--out", str(out)])
    assert exit_info.value.code == 0
    assert str(out / "report.md") in capsys.readouterr().out
    text = (out / "report.md").read_text()
    rows = {
        line.split("|")[1].strip(): line
        for line in text.splitlines()
        if line.startswith("| ") and "/version_" in line
    }
    assert set(rows) == {"ideal/version_0", "aircomp/version_0"}
    for name, module in modules.items():
        history = module.perplexity_history
        assert f"{history[0]:.4g} -> {history[-1]:.4g}" in rows[f"{name}/version_0"]
        assert f"| {module.ledger.total_bits:.4g} |" in rows[f"{name}/version_0"]
    assert "mean agg NMSE" in text and "mean rank" in text
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert {"quality_per_round.png", "aggregation_nmse.png", "mean_rank.png"} <= set(figures)
    assert "ranks_aircomp_version_0.png" in figures
    for name in figures:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_missing_run_dir_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RUN_DIR" in err[0]


def test_folder_without_events_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no TensorBoard event file" in capsys.readouterr().err
