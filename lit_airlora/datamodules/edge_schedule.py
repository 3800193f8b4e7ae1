"""Users attached to edge servers: each edge picks one of its users per round (SplitLLM)."""

from __future__ import annotations

import torch

from lit_airlora.datamodules.schedule import RoundSchedule
from lit_airlora.seeding import make_generator

#: Key separating the edge user draws from the schedule's other streams.
EDGE_STREAM = 0xED6E

USER_SELECTIONS = ("round_robin", "random")


def default_user_edges(num_users: int, num_edges: int) -> list[int]:
    """User ``u`` attached to edge ``u % num_edges``."""
    return [u % num_edges for u in range(num_users)]


def check_edges(num_edges: int, num_users: int | None, user_edges: list[int] | None) -> None:
    """Refuse E > N, an edge index out of range, an edge with no user, a user with no edge."""
    if isinstance(num_edges, bool) or not isinstance(num_edges, int) or num_edges < 1:
        raise ValueError(f"`num_edges` ({num_edges!r}) must be an int >= 1.")
    if num_users is not None and num_edges > num_users:
        raise ValueError(
            f"`num_edges` ({num_edges}) must be <= the number of users ({num_users}): every "
            "edge picks one of its own users each round. Use fewer edges or more users."
        )
    if user_edges is None:
        return
    bad = [e for e in user_edges if not isinstance(e, int) or not 0 <= e < num_edges]
    if bad:
        raise ValueError(
            f"`user_edges` holds {bad}: entries are edge indices in [0, {num_edges - 1}]."
        )
    if num_users is not None and len(user_edges) != num_users:
        raise ValueError(
            f"`user_edges` has {len(user_edges)} entries for {num_users} users: every user needs "
            "an edge (one entry per user), or leave it unset for user u -> edge u % num_edges."
        )
    empty = sorted(set(range(num_edges)) - set(user_edges))
    if empty:
        raise ValueError(
            f"`user_edges` ({user_edges}) attaches no user to edge(s) {empty}; every edge needs "
            "at least one user (or lower `num_edges`)."
        )


class EdgeSchedule(RoundSchedule):
    """One user per edge per round, then the usual local batches.

    Edge ``e`` serves the users ``U_e`` attached to it (sorted); in round ``t`` it picks
    ``U_e[t mod |U_e|]`` (``"round_robin"``) or a user drawn uniformly from a generator seeded
    by ``(seed, "edge", t, e)`` (``"random"``). A pure function of ``(seed, t)``, so resumed
    runs recompute the same rounds. ``clients(t)`` returns the ``E`` picked users, sorted.

    Args:
        user_edges: Edge of each user (user ``u`` attached to ``user_edges[u]``).
        num_edges: Number of edge servers ``E``.
        user_selection: ``"round_robin"`` or ``"random"``.
        local_steps: Local batches per user per round.
        seed: Base seed.
    """

    def __init__(
        self,
        user_edges: list[int],
        num_edges: int,
        user_selection: str,
        local_steps: int,
        seed: int,
    ):
        check_edges(num_edges, len(user_edges), user_edges)
        check_user_selection(user_selection)
        super().__init__(len(user_edges), num_edges, local_steps, seed)
        self.users_of = [
            [u for u, e in enumerate(user_edges) if e == edge] for edge in range(num_edges)
        ]
        self.user_selection = user_selection

    def clients(self, round_idx: int) -> list[int]:
        return sorted(
            self._pick(round_idx, edge, users) for edge, users in enumerate(self.users_of)
        )

    def _pick(self, round_idx: int, edge: int, users: list[int]) -> int:
        if self.user_selection == "round_robin":
            return users[round_idx % len(users)]
        index = torch.randint(
            len(users), (1,), generator=make_generator(self.seed, EDGE_STREAM, round_idx, edge)
        )
        return users[int(index)]


def check_user_selection(user_selection: str) -> None:
    if user_selection not in USER_SELECTIONS:
        raise ValueError(
            f"`user_selection` ({user_selection!r}) must be one of {list(USER_SELECTIONS)}."
        )
