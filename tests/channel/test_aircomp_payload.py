"""AirComp payloads: normalisation with side information, layout of heterogeneous ranks."""

from __future__ import annotations

import torch

from lit_airlora.callbacks.over_the_air import client_values
from lit_airlora.channel.normalise import (
    block_layout,
    client_stats,
    common_scale,
    max_ranks,
    mean_tensors,
    module_names,
    num_ofdm_symbols,
    pack,
    payload_size,
    unpack,
)
from tests.channel.aircomp_helpers import MODULES, make_template, make_uploads

NAMES = sorted(make_template())


def test_stats_are_mean_and_std_of_the_sent_entries():
    upload = make_uploads(ranks=(2,))[0]
    stats = client_stats(client_values(upload, NAMES), NAMES)
    sent = upload.tensors[NAMES[0]][:2].double()  # lora_A: the first `rank` rows
    torch.testing.assert_close(stats[0], torch.stack([sent.mean(), sent.std(correction=0)]))


def test_pack_unpack_plus_means_restores_the_upload():
    uploads = make_uploads(ranks=(4, 2))
    stats = torch.stack(
        [client_stats(client_values(u, NAMES), NAMES) for u in uploads]
    )  # (K, T, 2)
    scale = common_scale(stats, torch.tensor([True, True]))
    layout = block_layout(NAMES, dict.fromkeys(MODULES, 4))
    for k, upload in enumerate(uploads):
        z = pack(client_values(upload, NAMES), NAMES, layout, stats[k], scale)
        assert z.numel() == payload_size(make_template(), layout) == 4 * (4 * 12)
        assert float(z.pow(2).mean()) <= 1.0  # unit variance at most: the power budget holds
        restored = unpack(z, NAMES, layout, scale, make_template())
        means = mean_tensors(client_values(upload, NAMES), NAMES, stats[k])
        for name in NAMES:
            torch.testing.assert_close(restored[name] + means[name], upload.tensors[name].double())


def test_layout_is_the_largest_participating_rank_block():
    ranks = torch.tensor([[4.0, 1.0], [2.0, 3.0], [1.0, 1.0]])
    top = max_ranks(ranks, torch.tensor([False, True, True]), list(MODULES))
    assert top == {MODULES[0]: 2, MODULES[1]: 3}
    layout = block_layout(NAMES, top)
    assert layout[f"{MODULES[0]}.lora_A"] == 2 and layout[f"{MODULES[1]}.lora_B"] == 3
    assert payload_size(make_template(), layout) == 2 * (2 * 12) + 2 * (3 * 12)


def test_constant_tensor_has_zero_scale_and_is_sent_as_zeros():
    upload = make_uploads(ranks=(4,))[0]
    upload = upload.replace(tensors={n: torch.full_like(t, 0.5) for n, t in upload.tensors.items()})
    stats = client_stats(client_values(upload, NAMES), NAMES)[None]
    scale = common_scale(stats, torch.tensor([True]))
    layout = block_layout(NAMES, dict.fromkeys(MODULES, 4))
    assert torch.all(scale == 0)
    assert torch.all(pack(client_values(upload, NAMES), NAMES, layout, stats[0], scale) == 0)


def test_symbol_count_and_module_names():
    assert num_ofdm_symbols(900_000, num_subcarriers=64, num_streams=2) == 3516
    assert module_names(NAMES) == sorted(MODULES)
