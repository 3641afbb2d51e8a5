"""What the synthetic source says: the keyword, and the words that must *not* trigger it.

Negatives come in three kinds, so a model learns more than "any speech is the keyword":
- the other Google Speech Commands words (the classic KWS distractors),
- words that sound close to the keyword (hand-picked for known keywords, derived by a simple rule otherwise),
- common English filler words, alone and in short two-word phrases (continuous speech around no keyword).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# The 35 words of Google Speech Commands v2 (v1 has the first 30).
SPEECH_COMMANDS_WORDS = _words(
    "yes no up down left right on off stop go zero one two three four five six seven eight nine bed bird cat dog "
    "happy house marvin sheila tree wow backward forward follow learn visual"
)

# Hand-picked sound-alikes: same onset, same ending, or the same vowel pattern as the keyword.
KNOWN_CONFUSABLES = {
    "sheila": _words(
        "she sheep sheet shield sheller shelf leila delia tequila sheena shy layla shelley she'll shilling sheikh "
        "healer feeler cheater selah keeler shayla"
    ),
}

# Common English words that are neither commands nor close to a typical keyword.
FILLER_WORDS = _words(
    "the a and of to in is it that was for you he with as his they at be this from have or by one had not but what "
    "all were when we there can an your which their said if do will each about how many then them these so some her "
    "would make like him into time has look more write see number way could people my than first water been call who "
    "oil its now find long day did get come made may part hello okay thanks music weather light please play pause "
    "volume alarm timer morning evening coffee kitchen window today tomorrow maybe really actually because little "
    "never always something everything nothing sorry welcome"
)

# Derived confusables for a keyword without a hand-picked list: each word of a multi-word keyword alone, pieces
# of the keyword (which sound like its start and end), and Speech Commands words sharing its first or last letters.
PIECE_MIN_LETTERS = 2
SHARED_LETTERS = 2

_KEYWORD_PATTERN = re.compile(r"^[a-z][a-z' -]*[a-z]$")


def normalize_keyword(keyword: str) -> str:
    """Lower-case, single-spaced keyword; only letters, spaces, hyphens and apostrophes are allowed."""
    cleaned = " ".join(str(keyword).lower().split())
    if not _KEYWORD_PATTERN.match(cleaned):
        raise ValueError(
            f"keyword {keyword!r} is not usable: expected at least two letters, using only a-z, spaces, "
            "hyphens and apostrophes (e.g. 'sheila' or 'hey nova')"
        )
    return cleaned


def derived_confusables(keyword: str) -> list[str]:
    """Rule-based sound-alikes: the words of a multi-word keyword, its first and second half, the keyword minus its
    first or last letter, and Speech Commands words that share its first or last two letters."""
    words = keyword.split() if " " in keyword else []
    letters = keyword.replace(" ", "")
    half = len(letters) // 2
    pieces = [letters[:half], letters[half:], keyword[:-1].strip(), keyword[1:].strip()]
    pieces = [piece for piece in pieces if len(piece.replace(" ", "")) >= PIECE_MIN_LETTERS]
    start, end = letters[:SHARED_LETTERS], letters[-SHARED_LETTERS:]
    neighbours = [word for word in SPEECH_COMMANDS_WORDS if word.startswith(start) or word.endswith(end)]
    return words + pieces + neighbours


def _mentions_keyword(text: str, keyword: str) -> bool:
    return f" {keyword} " in f" {text} "


def _unique_without_keyword(words: Iterable[str], keyword: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in words:
        if word != keyword and not _mentions_keyword(word, keyword) and not word.startswith(keyword + "'"):
            seen.setdefault(word, None)
    return list(seen)


def negative_vocabulary(keyword: str) -> dict[str, list[str]]:
    """Negative words by kind ("command", "confusable", "filler"); none of them is or contains the keyword."""
    keyword = normalize_keyword(keyword)
    confusables = KNOWN_CONFUSABLES.get(keyword) or derived_confusables(keyword)
    return {
        "command": _unique_without_keyword(SPEECH_COMMANDS_WORDS, keyword),
        "confusable": _unique_without_keyword(confusables, keyword),
        "filler": _unique_without_keyword(FILLER_WORDS, keyword),
    }
