"""Toy rank policies for callback tests: scripted ranks and a counter that learns."""

from __future__ import annotations

import torch

from lit_airlora.policy.base import RankPolicy


class ScriptedRanks(RankPolicy):
    """Round ``t`` gets ``schedule[t % len]`` everywhere; counts its updates (resumable state)."""

    def __init__(self, schedule: list[int]):
        super().__init__(rank_min=1)
        self.schedule = list(schedule)
        self.updates = torch.zeros((), dtype=torch.int64)
        self.seen: list[tuple[int, float | None]] = []
        self.observed: list = []

    def act(self, obs):
        self.observed.append(obs)
        return dict.fromkeys(obs.modules, self.schedule[obs.round_idx % len(self.schedule)])

    def update(self, obs, ranks, feedback):
        self.updates += 1
        self.seen.append((feedback.round_idx, feedback.train_loss))

    def state_dict(self):
        return {"updates": self.updates.clone()}

    def load_state_dict(self, state):
        self.updates = state["updates"].clone()


class SpectrumReader(ScriptedRanks):
    """``ScriptedRanks`` that declares the costly observations (importance, update spectrum)."""

    required_observations = ("importance", "update_spectrum")
