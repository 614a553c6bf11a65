"""Streaming sentence splitter: feed text deltas as an LLM produces them, get each sentence back the moment it is
complete, so speech synthesis can start on the first sentence while the model is still writing the second.

A full stop ends a sentence only when whitespace and a next word follow, and that word does not start in lower
case; titles ("Dr. Smith"), initials ("J. Smith"), list numbers ("1. Turn"), "e.g."/"i.e." and numbers such as
"21.5" or "$5.00" never split. "!" and "?" followed by whitespace always end a sentence, a line break always does.
Overlong run-on text is cut at a comma or a space so that speech never waits for hundreds of characters.
Markdown that would be read out literally (`**`, backticks, heading marks, bullets) is removed from the output.
"""

from __future__ import annotations

import re

# Words after which a full stop does not end the sentence, whatever follows.
TITLES = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "st", "sr", "jr", "mt", "ft", "gen", "col", "capt", "lt", "sgt", "rev",
    "hon", "gov", "sen", "rep", "pres", "e.g", "i.e", "vs", "cf", "approx", "ca", "dept", "est", "inc", "ltd",
    "co", "corp", "ave", "blvd", "rd", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
})
# Abbreviations that precede a number: "No. 5", "Fig. 2".
NUMBER_ABBREVS = frozenset({"no", "nos", "nr", "vol", "p", "pp", "fig", "art", "ch", "sec", "tel", "ex"})
TERMINALS = ".!?…"
CLOSERS = "\"')]}”’»"
OPENERS = "\"'([{“‘«"
IMMEDIATE = "。！？"  # CJK terminals need no following space

_MARKDOWN = [
    (re.compile(r"^\s{0,3}#{1,6}\s+"), ""),           # heading marks
    (re.compile(r"^\s*(?:[-*+•]\s+)"), ""),             # bullets
    (re.compile(r"\*\*|__|`+|~~"), ""),                # emphasis, code, strike-through
    (re.compile(r"(?<!\w)\*(\S[^*]*?)\*(?!\w)"), r"\1"),  # *italic*
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),       # [text](link) -> text
    (re.compile(r"\s+"), " "),
]


def speakable(text: str) -> str:
    """Strip markdown that a voice would read out literally, and collapse whitespace."""
    for pattern, repl in _MARKDOWN:
        text = pattern.sub(repl, text)
    return text.strip()


class SentenceSplitter:
    """`feed(delta)` returns the sentences completed by that delta; `flush()` returns what is left at the end."""

    def __init__(self, max_chars: int = 250, clean: bool = True) -> None:
        if max_chars < 20:
            raise ValueError("max_chars must be at least 20")
        self.max_chars = max_chars
        self.clean = clean
        self._buf = ""
        self._pos = 0  # where scanning for a boundary resumes

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._next_boundary()
            if cut is None:
                break
            end, resume = cut
            self._emit(self._buf[:end], out)
            self._buf = self._buf[resume:]
            self._pos = 0
        if len(self._buf) > self.max_chars:
            self._cut_long(out)
        return out

    def flush(self) -> list[str]:
        out: list[str] = []
        self._emit(self._buf, out)
        self._buf, self._pos = "", 0
        return out

    def _emit(self, text: str, out: list[str]) -> None:
        sentence = speakable(text) if self.clean else text.strip()
        if sentence and any(ch.isalnum() for ch in sentence):
            out.append(sentence)

    def _next_boundary(self) -> tuple[int, int] | None:
        """(end of sentence, start of the rest), or None when no complete sentence is in the buffer yet."""
        buf = self._buf
        i = self._pos
        while i < len(buf):
            ch = buf[i]
            if ch == "\n":
                if buf[:i].strip():
                    return i, i + 1
                i += 1
                continue
            if ch in IMMEDIATE:
                return i + 1, i + 1
            if ch not in TERMINALS:
                i += 1
                continue
            j = i
            while j < len(buf) and buf[j] in TERMINALS:
                j += 1
            while j < len(buf) and buf[j] in CLOSERS:
                j += 1
            if j == len(buf):
                self._pos = i  # need to see what follows
                return None
            if not buf[j].isspace():
                i = j  # "21.5", "U.S.", "example.com"
                continue
            k = j
            while k < len(buf) and buf[k].isspace():
                k += 1
            if "\n" in buf[j:k]:
                return j, k
            if k == len(buf):
                self._pos = i
                return None
            if self._ends_sentence(buf, i, j, buf[k]):
                return j, k
            i = k
        self._pos = len(buf)
        return None

    def _ends_sentence(self, buf: str, i: int, j: int, nxt: str) -> bool:
        run = buf[i:j].rstrip(CLOSERS)
        if "!" in run or "?" in run:
            return True
        if nxt.islower() or nxt in ",;:":
            return False
        if run != ".":
            return True  # an ellipsis before a capital
        word = buf[:i].rsplit(None, 1)[-1].lstrip(OPENERS) if buf[:i].strip() else ""
        low = word.lower()
        if low in TITLES:
            return False
        if len(word) == 1 and word.isalpha() and word.isupper():
            return False  # an initial: "J. Smith"
        if low in NUMBER_ABBREVS and nxt.isdigit():
            return False
        if word.isdigit() and buf[:i].strip() == word:
            return False  # a list number at the start: "1. Turn on"
        return True

    def _cut_long(self, out: list[str]) -> None:
        head = self._buf[: self.max_chars]
        for sep in ("; ", ": ", ", ", " — ", " - ", " "):
            at = head.rfind(sep)
            if at > self.max_chars // 3:
                self._emit(self._buf[: at + len(sep)], out)
                self._buf = self._buf[at + len(sep):]
                self._pos = 0
                return


def split_sentences(text: str, max_chars: int = 250) -> list[str]:
    """Split a complete text into sentences (the streaming splitter fed in one go)."""
    splitter = SentenceSplitter(max_chars=max_chars)
    return splitter.feed(text) + splitter.flush()
