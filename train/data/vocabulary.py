"""What the synthetic source says: the keyword, and the words that must *not* trigger it.

Negatives come in three kinds, so a model learns more than "any speech is the keyword":
- the other Google Speech Commands words (the classic KWS distractors),
- words that sound close to the keyword (hand-picked for known keywords, derived by a simple rule otherwise),
- common English filler words, alone and in short two-word phrases (continuous speech around no keyword),
- hard negatives made from the keyword's sound with the CMU dictionary: its parts ("she" for "sheila", "hey" for
  "hey nova"), longer words with it inside ("supernova"), and words one phone away ("hey novak").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache


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
    """Negative words by kind ("command", "confusable", "filler", "hard"); none of them is or contains the keyword.
    "hard" holds `hard_negatives`: parts of the keyword, longer words with it inside, one-phone neighbours."""
    keyword = normalize_keyword(keyword)
    confusables = KNOWN_CONFUSABLES.get(keyword) or derived_confusables(keyword)
    hard = hard_negatives(keyword)
    return {
        "command": _unique_without_keyword(SPEECH_COMMANDS_WORDS, keyword),
        "confusable": _unique_without_keyword(confusables, keyword),
        "filler": _unique_without_keyword(FILLER_WORDS, keyword),
        "hard": _unique_without_keyword(hard["part"] + hard["inside"] + hard["neighbour"], keyword),
    }


# ---- pronunciations (the CMU dictionary that the pocketsphinx wheel ships) ----

MAX_PRONUNCIATION_VARIANTS = 16  # of a multi-word text: alternatives multiply, keep the first few combinations
_ALTERNATIVE = re.compile(r"\(\d+\)$")


def dictionary_path():
    """The CMU pronouncing dictionary inside the pocketsphinx wheel (requirements-train.txt)."""
    from pathlib import Path

    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"


@cache
def pronunciation_dictionary() -> dict[str, tuple[str, ...]]:
    """word -> its pronunciations as ARPAbet phones without stress marks ("SH IY L AH"), alternatives in order."""
    entries: dict[str, list[str]] = {}
    with open(dictionary_path(), encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 2:
                continue
            word = _ALTERNATIVE.sub("", fields[0])
            entries.setdefault(word, []).append(" ".join(phone.rstrip("012") for phone in fields[1:]))
    return {word: tuple(dict.fromkeys(phones)) for word, phones in entries.items()}


def pronunciations_of(text: str) -> tuple[str, ...]:
    """Pronunciations of a word or phrase (combinations of each word's alternatives, at most
    MAX_PRONUNCIATION_VARIANTS); empty when any word is not in the dictionary."""
    dictionary = pronunciation_dictionary()
    combined = [""]
    for word in text.split():
        options = dictionary.get(word)
        if not options:
            return ()
        combined = [f"{head} {option}".strip() for head in combined for option in options][
            :MAX_PRONUNCIATION_VARIANTS
        ]
    return tuple(combined)


# ---- hard negatives made from the keyword's sound ----

HARD_PER_KIND = 24  # at most this many words of each hard kind (the closest first)
PLURAL_PHONES = ("S", "Z", "IH Z", "AH Z")  # "sheila's" *is* the keyword to a listener: never a negative
PART_MIN_PHONES = 2
CARRIER_WORDS = _words("the a my oh hi so now then there you")  # around a multi-word keyword's single words


def _phone_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between phone sequences."""
    previous = list(range(len(b) + 1))
    for i, phone_a in enumerate(a, 1):
        current = [i]
        for j, phone_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (phone_a != phone_b)))
        previous = current
    return previous[-1]


def _says_keyword(phones: str, keyword_phones: tuple[str, ...]) -> bool:
    return any(phones == k or any(phones == f"{k} {p}" for p in PLURAL_PHONES) for k in keyword_phones)


def _spread(items: list[str], count: int) -> list[str]:
    """At most `count` items, evenly spread over the (sorted) list, so no one spelling dominates."""
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else items[:1]


def _sound_search(keyword: str, keyword_phones: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """Dictionary words that sound like a part of the keyword, contain it, or are one phone away."""
    target = keyword_phones[0].split()
    pieces = {" ".join(target[:n]) for n in range(PART_MIN_PHONES, len(target))}
    pieces |= {" ".join(target[-n:]) for n in range(PART_MIN_PHONES, len(target))}
    parts, inside, neighbours = [], [], []
    for word, pronunciations in pronunciation_dictionary().items():
        if not word.isalpha() or word in keyword.split():
            continue
        for phones in pronunciations:
            sequence = phones.split()
            if _says_keyword(phones, keyword_phones):
                break
            if phones in pieces:
                parts.append(word)
                break
            if any(f" {k} " in f" {phones} " for k in keyword_phones):
                inside.append(word)
                break
            if abs(len(sequence) - len(target)) <= 1 and len(target) >= 3 and _phone_distance(sequence, target) == 1:
                neighbours.append(word)
                break
    return sorted(parts), sorted(inside), sorted(neighbours)


@cache
def hard_negatives(keyword: str) -> dict[str, list[str]]:
    """Words and phrases that sound like part of the keyword or contain it, by kind (from the CMU dictionary):
    - "part": a word of a multi-word keyword alone or with a carrier word ("hey there", "oh nova"), and words
      that sound like the keyword's first or last phones ("she" for "sheila");
    - "inside": longer words with the keyword (or one word of it) inside ("casanova" for "nova"), plurals excluded;
    - "neighbour": one phone away from the keyword or, in a phrase, from one of its words ("hey novak").
    Only the carrier phrases are made when the keyword is not in the dictionary (`derived_confusables`' letter
    rules still apply)."""
    keyword = normalize_keyword(keyword)
    words = keyword.split()
    parts, inside, neighbours = [], [], []
    if len(words) > 1:
        for index, word in enumerate(words):
            parts.append(word)
            parts += [f"{word} {c}" if index == 0 else f"{c} {word}" for c in CARRIER_WORDS[:4]]
    keyword_phones = pronunciations_of(keyword)
    if keyword_phones:
        found = _sound_search(keyword, keyword_phones)
        parts, inside, neighbours = parts + found[0], inside + found[1], neighbours + found[2]
    for index, word in enumerate(words if len(words) > 1 else []):
        word_phones = pronunciations_of(word)
        if word_phones and len(word_phones[0].split()) >= 3:
            _, word_inside, word_neighbours = _sound_search(word, word_phones)
            inside += word_inside
            neighbours += [" ".join(words[:index] + [n] + words[index + 1 :]) for n in word_neighbours]
    return {
        "part": _spread(_unique_without_keyword(parts, keyword), HARD_PER_KIND * 2),
        "inside": _spread(_unique_without_keyword(inside, keyword), HARD_PER_KIND),
        "neighbour": _spread(_unique_without_keyword(neighbours, keyword), HARD_PER_KIND),
    }
