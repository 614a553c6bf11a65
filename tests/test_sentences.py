"""The streaming sentence splitter: sentences come out as soon as they end, never early, whatever the chunking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_agent.sentences import SentenceSplitter, speakable, split_sentences

TOKEN_RE = re.compile(r"\s*[A-Za-z']+|\s*\d|\s*[^\sA-Za-z\d]|\s+")


@pytest.mark.parametrize("text, expected", [
    ("It is sunny. It is 21.5 degrees.", ["It is sunny.", "It is 21.5 degrees."]),
    ("Dr. Smith is here. Mrs. Jones too.", ["Dr. Smith is here.", "Mrs. Jones too."]),
    ("That costs $5.00 today. Okay?", ["That costs $5.00 today.", "Okay?"]),
    ("Really? Yes! Fine.", ["Really?", "Yes!", "Fine."]),
    ("Well... I think so.", ["Well...", "I think so."]),
    ("Wait... what was that?", ["Wait... what was that?"]),
    ("Use a timer, e.g. Kitchen. Done.", ["Use a timer, e.g. Kitchen.", "Done."]),
    ("J. R. R. Tolkien wrote it. Then he slept.", ["J. R. R. Tolkien wrote it.", "Then he slept."]),
    ("Room No. 5 is warm. Good.", ["Room No. 5 is warm.", "Good."]),
    ("1. Turn on the light\n2. Lock the door", ["1. Turn on the light", "2. Lock the door"]),
    ("She said \"Hi.\" Then left.", ["She said \"Hi.\"", "Then left."]),
    ("Visit example.com now. Bye.", ["Visit example.com now.", "Bye."]),
    ("It's 7 p.m. now. The end", ["It's 7 p.m. now.", "The end"]),
    ("**Done**. The `kitchen light` is off.\n- Next", ["Done.", "The kitchen light is off.", "Next"]),
    ("   \n\n  ", []),
    ("...", []),
])
def test_split(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_sentence_is_released_as_soon_as_the_next_word_starts() -> None:
    s = SentenceSplitter()
    assert s.feed("The light is off") == []
    assert s.feed(".") == []          # could still be "off.5" or an abbreviation
    assert s.feed(" ") == []          # the next word decides
    assert s.feed("Anything") == ["The light is off."]
    assert s.feed(" else?") == []
    assert s.flush() == ["Anything else?"]
    assert s.flush() == []


def test_decimal_split_across_deltas_is_not_a_boundary() -> None:
    s = SentenceSplitter()
    out = []
    for piece in ["It is 2", "1", ".", "5", " degrees", ".", " Nice", "."]:
        out += s.feed(piece)
    assert out + s.flush() == ["It is 21.5 degrees.", "Nice."]


def test_newline_ends_a_sentence_immediately() -> None:
    s = SentenceSplitter()
    assert s.feed("First line\n") == ["First line"]
    assert s.feed("second") == []
    assert s.flush() == ["second"]


def test_run_on_text_is_cut_at_a_comma() -> None:
    s = SentenceSplitter(max_chars=60)
    out = []
    for tok in TOKEN_RE.findall("one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen"):
        out += s.feed(tok)
    out += s.flush()
    assert len(out) >= 2
    assert all(len(x) <= 60 for x in out)
    assert " ".join(out).replace(" ", "") == "one,two,three,four,five,six,seven,eight,nine,ten,eleven,twelve,thirteen"


def test_speakable_strips_markdown() -> None:
    assert speakable("## Weather\n**Sunny**, *warm* and `21` degrees. [map](http://x)") == \
        "Weather Sunny, warm and 21 degrees. map"


def test_max_chars_is_validated() -> None:
    with pytest.raises(ValueError):
        SentenceSplitter(max_chars=5)


_words = st.sampled_from(["Dr.", "Mr.", "It", "is", "21.5", "$5.00", "e.g.", "sunny.", "Yes!", "why?", "Well...",
                          "ok", "No.", "5", "J.", "Smith", "the", "Light", "\n", "U.S.", "end.", "\"Hi.\"", "1."])


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_words, max_size=40), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_chunking_never_changes_the_result(words: list[str], cuts: list[int]) -> None:
    """However the text is cut into deltas, the sentences are the same, and no character is lost or invented."""
    text = " ".join(words)
    whole = split_sentences(text, max_chars=100_000)
    s = SentenceSplitter(max_chars=100_000)
    streamed: list[str] = []
    prev = 0
    for cut in sorted({c for c in cuts if c < len(text)}) + [len(text)]:
        streamed += s.feed(text[prev:cut])
        prev = cut
    streamed += s.flush()
    assert streamed == whole
    raw = SentenceSplitter(max_chars=100_000, clean=False)
    pieces = raw.feed(text) + raw.flush()
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "") or \
        not any(ch.isalnum() for ch in text)
