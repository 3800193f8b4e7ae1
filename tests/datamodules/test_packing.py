"""Causal-LM packing: block contents, labels, padding and the validation hold-out."""

from __future__ import annotations

import torch

from lit_airlora.datamodules.blocks import IGNORE_INDEX, ClientBlockDataset
from lit_airlora.datamodules.packing import (
    num_validation_blocks,
    pack_client,
    pack_tokens,
    tokenize_texts,
)

EOS, PAD = 1, 0


def test_texts_are_joined_by_eos_and_cut_into_blocks():
    blocks = pack_tokens([[5, 6, 7], [8, 9]], seq_len=3, eos_id=EOS, pad_id=PAD)
    # stream: 5 6 7 EOS 8 9 EOS -> [5 6 7] [EOS 8 9] [EOS] (1 token: dropped)
    assert blocks.input_ids.tolist() == [[5, 6, 7], [EOS, 8, 9]]
    assert blocks.num_tokens.tolist() == [3, 3]


def test_last_partial_block_is_padded():
    blocks = pack_tokens([[5, 6, 7, 8]], seq_len=4, eos_id=EOS, pad_id=PAD)
    assert blocks.input_ids.tolist() == [[5, 6, 7, 8]]  # EOS alone would be dropped
    blocks = pack_tokens([[5, 6, 7, 8, 9]], seq_len=4, eos_id=EOS, pad_id=PAD)
    assert blocks.input_ids.tolist() == [[5, 6, 7, 8], [9, EOS, PAD, PAD]]
    assert blocks.num_tokens.tolist() == [4, 2]


def test_max_blocks_caps_the_stream():
    blocks = pack_tokens([list(range(2, 30))], seq_len=4, eos_id=EOS, pad_id=PAD, max_blocks=3)
    assert blocks.input_ids.shape == (3, 4)


def test_samples_carry_mask_labels_and_client():
    first = pack_tokens([[5, 6, 7, 8, 9]], seq_len=4, eos_id=EOS, pad_id=PAD)
    second = pack_tokens([[3, 4, 5]], seq_len=4, eos_id=EOS, pad_id=PAD)
    dataset = ClientBlockDataset([first, second], client_weights=[2, 1])
    assert len(dataset) == 3
    sample = dataset[1]
    assert sample["input_ids"].tolist() == [9, EOS, PAD, PAD]
    assert sample["attention_mask"].tolist() == [1, 1, 0, 0]
    assert sample["labels"].tolist() == [9, EOS, IGNORE_INDEX, IGNORE_INDEX]
    assert int(sample["client_id"]) == 0 and float(sample["client_weight"]) == 2.0
    assert int(dataset[2]["client_id"]) == 1 and float(dataset[2]["client_weight"]) == 1.0
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    assert batch["client_id"].dtype == torch.long and batch["client_id"].shape == (3,)
    assert batch["client_weight"].dtype == torch.float32
    assert batch["labels"].shape == (3, 4)


def test_validation_hold_out():
    assert num_validation_blocks(100, 0.1) == 10
    assert num_validation_blocks(5, 0.1) == 1  # at least one from two blocks on
    assert num_validation_blocks(2, 0.5) == 1
    assert num_validation_blocks(1, 0.5) == 0
    assert num_validation_blocks(10, 0.0) == 0
    assert num_validation_blocks(3, 0.99) == 2  # a client keeps a training block


def test_pack_client_tokenises_and_holds_out_the_tail(tokenizer):
    texts = ["abcdefgh", "ijklmnop"]
    train, val = pack_client(tokenizer, texts, seq_len=6, val_fraction=0.25)
    stream = tokenizer("abcdefgh")["input_ids"] + tokenizer("ijklmnop")["input_ids"]
    assert stream[8] == tokenizer.eos_token_id  # ByT5 appends EOS itself
    assert len(train) == 2 and len(val) == 1
    assert train.input_ids.flatten().tolist() == stream[:12]
    assert val.input_ids[0, :6].tolist() == stream[12:18]


def test_tokenising_stops_once_the_cap_is_reached(tokenizer):
    texts = ["x" * 10] * 1000
    assert len(tokenize_texts(tokenizer, texts, max_tokens=50)) < 1000
    assert len(tokenize_texts(tokenizer, texts)) == 1000
