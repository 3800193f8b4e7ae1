"""Partitioners: IID sizes, Dirichlet skew against alpha, natural groups, and their errors."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.datamodules import IID, Dirichlet, Natural
from lit_airlora.datamodules.partitioners import check_min_samples


def _records(num_per_label: int = 100, num_labels: int = 5) -> list[dict]:
    return [
        {"text": f"t{i}", "label": label, "role": f"r{label % 3}"}
        for label in range(num_labels)
        for i in range(num_per_label)
    ]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_iid_sizes_cover_every_record_once():
    clients = IID(num_clients=7).partition(_records(), _gen())
    assert sorted(len(c) for c in clients) == [71] * 4 + [72] * 3
    assert sorted(i for c in clients for i in c) == list(range(500))
    assert clients == IID(num_clients=7).partition(_records(), _gen())
    assert clients != IID(num_clients=7).partition(_records(), _gen(1))


def _mean_label_entropy(clients, records) -> float:
    entropies = []
    for indices in clients:
        counts = torch.bincount(torch.tensor([records[i]["label"] for i in indices]), minlength=5)
        p = counts[counts > 0].double() / counts.sum()
        entropies.append(float(-(p * p.log()).sum()))
    return sum(entropies) / len(entropies)


def test_dirichlet_skew_grows_as_alpha_shrinks():
    records = _records()
    entropy = {
        alpha: _mean_label_entropy(Dirichlet(10, alpha).partition(records, _gen()), records)
        for alpha in (0.05, 1.0, 1000.0)
    }
    # Seeded draw; tolerance: log(5) = 1.61 is the IID entropy of 5 balanced labels.
    assert entropy[1000.0] > 1.5
    assert entropy[0.05] < 0.7
    assert entropy[0.05] < entropy[1.0] < entropy[1000.0]


def test_dirichlet_partition_is_complete_and_respects_min_size():
    records = _records()
    clients = Dirichlet(10, 0.1, min_size=5).partition(records, _gen())
    assert sorted(i for c in clients for i in c) == list(range(len(records)))
    assert min(len(c) for c in clients) >= 5


def test_dirichlet_errors():
    with pytest.raises(ValueError, match=r"`alpha` \(0\.0\) must be > 0"):
        Dirichlet(4, 0.0)
    with pytest.raises(ValueError, match=r"`alpha` \(-1\) must be > 0"):
        Dirichlet(4, -1)
    with pytest.raises(ValueError, match=r"`column` \('topic'\).*\['label', 'role', 'text'\]"):
        Dirichlet(4, 1.0, column="topic").partition(_records(), _gen())
    with pytest.raises(ValueError, match=r"`num_clients` \(0\)"):
        Dirichlet(0, 1.0)


def test_natural_keeps_largest_groups():
    records = [{"text": "x", "role": r} for r in ["b", "a", "c", "a", "b", "a", "d"]]
    partitioner = Natural(column="role", num_clients=2)
    clients = partitioner.partition(records, _gen())
    assert clients == [[1, 3, 5], [0, 4]]
    assert partitioner.client_names(records, clients) == ["a", "b"]
    assert len(Natural(column="role").partition(records, _gen())) == 4


def test_natural_errors():
    records = [{"text": "x", "role": "a"}]
    with pytest.raises(ValueError, match=r"`num_clients` \(3\) exceeds the 1 distinct"):
        Natural(num_clients=3).partition(records, _gen())
    with pytest.raises(ValueError, match=r"`column` \('play'\).*\['role', 'text'\]"):
        Natural(column="play").partition(records, _gen())


def test_min_samples_names_the_client():
    with pytest.raises(
        ValueError, match=r"Client 1 holds 1 record\(s\).*`min_samples_per_client` \(2\)"
    ):
        check_min_samples([[0, 1], [2], [3, 4]], 2)
    check_min_samples([[0, 1], [2, 3]], 2)
