"""The model cache: built once by one of several racing processes; a damaged one is named."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

import pytest

from lit_airlora.cache import build_once
from lit_airlora.errors import ConfigError


def _slow_build(scratch: Path) -> None:
    scratch.mkdir(parents=True)
    with open(scratch.parent / "builders.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    (scratch / "model.safetensors").write_bytes(b"x" * 1000)
    time.sleep(1.0)  # long enough for the other process to arrive and wait
    (scratch / "config.json").write_text("{}")


def _race(target: str, start_at: float, results) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    built = build_once(Path(target), _slow_build)
    complete = (Path(target) / "config.json").exists()
    results.put((built, complete))


def test_two_racing_processes_build_the_cache_once(tmp_path):
    target = tmp_path / "cache" / "model"
    context = mp.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # both processes are imported by then
    workers = [context.Process(target=_race, args=(str(target), start_at, results)) for _ in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == [(False, True), (True, True)]  # one built, the other found it complete
    assert len((target.parent / "builders.log").read_text().split()) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "builders.log",
        "model",
        "model.lock",
    ]


def test_a_truncated_cache_names_the_file_and_the_fix(tmp_path, tiny_llama_dir):
    from lit_airlora.models import load_causal_lm

    cache = tmp_path / "cache"
    shutil.copytree(tiny_llama_dir, cache)
    weights = cache / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"model.safetensors is truncated or corrupt") as info:
        load_causal_lm(tiny_llama_dir, gguf_file="model.gguf", cache_dir=str(cache))
    assert f"delete the folder {cache}" in str(info.value)
