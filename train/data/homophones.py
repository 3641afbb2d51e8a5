"""Negatives that eSpeak NG says like the keyword: found from its own phonemes and dropped before synthesis.

The hard negatives come from the CMU dictionary (`vocabulary.hard_negatives`), which spells American English with
an r-coloured vowel where other accents have none: "scheeler" is SH IY L ER there, one phone from "sheila", but
eSpeak's non-rhotic voices (en-gb-x-rp, en-029) say both as [S'i:la#]. Labelled "other", such a clip is a keyword
clip with the wrong label, in training and in the test split alike. So every negative word and phrase is also
looked up in eSpeak, in every English language voice the data uses, and dropped when one of them says it like
the keyword. Two pronunciations count as the same when they differ only in stress marks or in which reduced
vowel ends a word (accents differ there: [@], [3], [a#], [V]); anything else, such as "shealy" [S'i:li], stays a
(hard) negative.
"""

from __future__ import annotations

import re
from functools import cache

from train.data.espeak import EspeakEngine, english_languages

STRESS_MARKS = re.compile(r"[',]")
FINAL_REDUCED_VOWEL = re.compile(r"(a#|@2|@|3|V)(?= |$)")


def sound_key(phonemes: str) -> str:
    """A pronunciation with stress marks dropped and each word's final reduced vowel written as [@]."""
    return FINAL_REDUCED_VOWEL.sub("@", STRESS_MARKS.sub("", phonemes.strip()))


@cache
def espeak_homophones(keyword: str, words: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `words` that some English eSpeak voice pronounces like `keyword` (in the order given).

    This loads eSpeak in the calling process, which is safe for synthesis: every synthesis shard runs in a fresh
    process (`train.data.synthetic`), so nothing here changes the audio of a build."""
    engine = EspeakEngine.shared()
    same = set()
    for language in english_languages():
        keyword_key, *word_keys = (sound_key(said) for said in engine.phonemes([keyword, *words], language))
        same.update(word for word, key in zip(words, word_keys, strict=True) if key == keyword_key)
    return tuple(word for word in words if word in same)


def without_homophones(vocabulary: dict[str, list[str]], keyword: str) -> tuple[dict[str, list[str]], list[str]]:
    """`vocabulary` with eSpeak homophones of `keyword` removed from every kind, and the sorted removed words."""
    every_word = tuple(sorted({word for words in vocabulary.values() for word in words}))
    dropped = set(espeak_homophones(keyword, every_word))
    kept = {kind: [word for word in words if word not in dropped] for kind, words in vocabulary.items()}
    return kept, sorted(dropped)
