"""Shakespeare speeches by role: the speaker markup of the Gutenberg texts."""

from __future__ import annotations

from collections import Counter

import pytest

from lit_airlora.datamodules import ShakespeareCorpus
from lit_airlora.datamodules.sources.shakespeare import parse_play

UPPER_PLAY = """THE PLAY

PERSONS REPRESENTED.

KING, a king.
QUEEN, his wife.

SCENE: A court.

ACT I.

SCENE I. A room.

[Enter KING and QUEEN.]

KING.
Good morrow, wife.
How dost thou?

QUEEN
Well, my lord. [Aside.] Not so.

[Exit KING.]

Now he is gone.

SCENE II. Elsewhere.

Orphan line after a heading
that no one speaks.

KING.
Farewell.
THE END
"""

TITLE_PLAY = """SCENE. Somewhere.

ACT I.

Ham.
To be, or not to be.

Lady Cap.
What say you?

Hor.
Peace.
"""


def test_upper_case_speakers_stage_directions_and_continuations():
    assert parse_play(UPPER_PLAY) == [
        ("KING", "Good morrow, wife.\nHow dost thou?"),
        ("QUEEN", "Well, my lord.  Not so.\nNow he is gone."),
        ("KING", "Farewell."),
    ]


def test_abbreviated_speakers():
    roles = [role for role, _ in parse_play(TITLE_PLAY)]
    assert roles == ["HAM", "LADY CAP", "HOR"]


def test_hamlet_roles():
    records = ShakespeareCorpus(plays=["hamlet"]).load()
    roles = Counter(r["role"] for r in records)
    assert records[0] == {"text": "Who's there?", "role": "hamlet/BER", "play": "hamlet"}
    # Hamlet speaks most; the main cast is found with plausible speech counts.
    assert roles.most_common(1)[0][0] == "hamlet/HAM"
    for role in ["HAM", "HOR", "KING", "POL", "QUEEN", "LAER", "OPH", "GHOST"]:
        assert roles[f"hamlet/{role}"] >= 10, role
    assert 1000 < len(records) < 1150
    assert all(r["text"] and "[" not in r["text"] for r in records)


def test_upper_case_play_and_poems():
    records = ShakespeareCorpus(plays=["macbeth", "sonnets"]).load()
    roles = Counter(r["role"] for r in records)
    assert roles["macbeth/MACBETH"] > 100 and roles["macbeth/LADY MACBETH"] > 30
    assert {r["play"] for r in records} == {"macbeth"}  # the poems have no speakers


def test_unknown_play_lists_available():
    with pytest.raises(ValueError, match=r"`plays` entry 'hamlett'.*'hamlet'"):
        ShakespeareCorpus(plays=["hamlett"]).load()
