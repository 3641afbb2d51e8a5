"""What the evaluation streams say: English sentences and random dictionary words that training never used.

Sentences come from Python's own reference documentation (`pydoc_data.topics`, in every CPython), kept only when
every word is in the CMU pronouncing dictionary that pocketsphinx ships, so eSpeak NG and the peer both know how
to say them. Random word sequences from the same dictionary add phonetic breadth (names, rare words). Nothing
that is or contains the keyword, by spelling or by pronunciation, is ever said (see `mentions_keyword`).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from train.data.vocabulary import pronunciation_dictionary, pronunciations_of

SENTENCE_WORDS = (5, 25)
RANDOM_PHRASE_WORDS = (3, 9)
RANDOM_WORD_MAX_LETTERS = 12
RANDOM_PHRASE_SHARE = 0.3  # of the sentences a stream says
_TOKEN = re.compile(r"[A-Za-z']+")
_CODE = re.compile(r"[=(){}\[\]_<>*/\\|#@$%^&~`\"]")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n\s*\n")


@cache
def documentation_sentences() -> tuple[str, ...]:
    """Lower-case sentences of plain English from the Python reference docs, every word in the dictionary."""
    import pydoc_data.topics

    words = pronunciation_dictionary()
    sentences = []
    for piece in _SENTENCE_END.split(" ".join(pydoc_data.topics.topics.values())):
        if _CODE.search(piece):
            continue
        tokens = [token.lower().strip("'") for token in _TOKEN.findall(piece)]
        if SENTENCE_WORDS[0] <= len(tokens) <= SENTENCE_WORDS[1] and all(token in words for token in tokens):
            sentences.append(" ".join(tokens))
    return tuple(dict.fromkeys(sentences))


@cache
def dictionary_words() -> tuple[str, ...]:
    """Plain alphabetic dictionary words, for random phrases."""
    return tuple(
        sorted(w for w in pronunciation_dictionary() if w.isalpha() and len(w) <= RANDOM_WORD_MAX_LETTERS)
    )


def mentions_keyword(text: str, keyword: str) -> bool:
    """True when `text` says the keyword: its spelling (spaces ignored) or its pronunciation inside any word or
    across neighbouring words."""
    squeezed = text.replace(" ", "")
    if keyword.replace(" ", "") in squeezed:
        return True
    keyword_phones = pronunciations_of(keyword)
    if not keyword_phones:
        return False
    text_phones = pronunciations_of(text)
    return any(f" {k} " in f" {t} " for k in keyword_phones for t in text_phones)


class TextSource:
    """Draws what a stream says, never the keyword. Build it once per process (`text_source`): the dictionary
    takes a second or two to read."""

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        self._sentences = [s for s in documentation_sentences() if not mentions_keyword(s, keyword)]
        self._words = dictionary_words()
        if not self._sentences:
            raise ValueError("no evaluation sentences are left once the keyword is excluded")

    def sentence(self, rng: np.random.Generator) -> str:
        if rng.random() < RANDOM_PHRASE_SHARE:
            count = int(rng.integers(RANDOM_PHRASE_WORDS[0], RANDOM_PHRASE_WORDS[1] + 1))
            while True:  # a word, or two words together, can say the keyword: draw again
                phrase = " ".join(self._words[i] for i in rng.integers(len(self._words), size=count))
                if not mentions_keyword(phrase, self.keyword):
                    return phrase
        return self._sentences[int(rng.integers(len(self._sentences)))]


@cache
def text_source(keyword: str) -> TextSource:
    return TextSource(keyword)
