"""The five-system comparison puts every system on the same uplink SNR distribution: each path
it overrides must name an SNR model that the system's own config file really has."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import yaml

EXPERIMENTS = Path(__file__).resolve().parents[2] / "docs" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
all_systems = pytest.importorskip("all_systems")
get_dotted = all_systems.runner.get_dotted


@pytest.mark.parametrize("system", list(all_systems.SYSTEMS))
def test_every_uplink_snr_model_is_replaced_by_the_shared_one(system):
    parser = argparse.ArgumentParser()
    all_systems.runner.add_scale_arguments(parser)
    args = parser.parse_args([])
    args.snr_low_db, args.snr_high_db = 3.0, 17.0
    overrides = all_systems.overrides(args, system)
    # The channel lives in the system's last file (the quickstart base has no callbacks, so
    # callback indices are the same once composed).
    path = all_systems.runner.CONFIGS / all_systems.SYSTEMS[system][-1]
    own = yaml.safe_load(path.read_text())
    for dotted in all_systems.SNR_PATHS[system]:
        assert dotted.endswith("large_scale")
        assert get_dotted(own, dotted), f"{path.name} has no SNR model at {dotted}"
        shared = {"low_db": 3.0, "high_db": 17.0, "seed": 0}
        assert overrides[dotted]["init_args"] == shared
    text = path.read_text()
    assert bool(all_systems.SNR_PATHS[system]) == ("large_scale" in text)
    kept = all_systems.KEPT_SNR_PATHS.get(system, [])
    for dotted in kept:
        assert get_dotted(own, dotted) and dotted not in overrides
    assert text.count("large_scale:") == len(all_systems.SNR_PATHS[system]) + len(kept)


def test_seed_noise_reruns_change_only_the_seeds():
    """The yardstick reruns of ideal FedAvg-LoRA keep data, clients and held-out set."""
    parser = argparse.ArgumentParser()
    all_systems.runner.add_scale_arguments(parser)
    args = parser.parse_args([])
    args.snr_low_db, args.snr_high_db = 0.0, 20.0
    args.systems, args.noise_seeds = [all_systems.IDEAL, all_systems.SPLIT], [1, 2]
    args.rerun_systems, args.rerun_seeds = [all_systems.SPLIT], [5]
    base = all_systems.overrides(args, all_systems.IDEAL)
    rerun = all_systems.overrides(args, all_systems.IDEAL, seed=2)
    changed = {k for k in rerun if base.get(k) != rerun[k]}
    assert changed == {"seed_everything", "model.init_args.seed"} and rerun["seed_everything"] == 2
    names = [name for name, _, _ in all_systems.planned_runs(args)]
    reruns = [*map(all_systems.noise_name, (1, 2)), f"{all_systems.SPLIT}, seed 5"]
    assert names == [all_systems.IDEAL, all_systems.SPLIT, *reruns]


def test_gap_to_ideal_is_judged_against_the_seed_spread():
    rows = [
        {"system": all_systems.IDEAL, "final_perplexity": 200.0},
        {"system": all_systems.noise_name(1), "final_perplexity": 203.0},
        {"system": all_systems.AIRFL, "final_perplexity": 202.0},
        {"system": all_systems.SOFT, "final_perplexity": 210.0},
    ]
    spread = all_systems.seed_spread(rows)
    assert spread == 3.0
    assert all_systems.verdict(rows[2], 200.0, spread) == "+2.00 (within seed spread)"
    assert all_systems.verdict(rows[3], 200.0, spread) == "+10.00 (beyond seed spread)"
