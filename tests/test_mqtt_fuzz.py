"""Hostile MQTT payloads (issue 6.2): property-based fuzzing of parse_announcement with hypothesis, and a burst of
random payloads through a real broker into a running MqttLink. Every input either yields a clean announcement or an
MqttError with a known code; nothing else escapes, and the link keeps working."""

from __future__ import annotations

import json
import os
import random
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.broker import Broker, Client, Collector
from voice_agent.announcements import (
    PRIORITIES,
    AnnouncementRequest,
    parse_announcement,
)
from voice_agent.config import ApplianceConfig
from voice_agent.errors import MqttError
from voice_agent.mqtt import MqttLink

CODES = {"mqtt-payload-too-large", "mqtt-payload-not-utf8", "mqtt-payload-invalid"}
FUZZ_EXAMPLES = int(os.environ.get("VOICE_AGENT_FUZZ_EXAMPLES", "3000"))
BROKER_PAYLOADS = 400

MARKUP = ["<b>", "</b>", "<script>alert(1)</script>", "<speak><break time='9s'/></speak>", "&lt;i&gt;", "&amp;",
          "&#27;[2J", "*", "**bold**", "`code`", "<", ">", "<<a>b>", "\uff1cscript\uff1e", "hello", "Dinner", " ",
          "\n", "\t", "\x00", "\x1b[31m", "\x1b]0;title\x07", "\u202e", "\u200b", "\ufeff", "\ud7ff", "\U0010fffd",
          "{", "}", "[", "]", '"', "\\", "ünïcödé", "\u0301", "\u2028"]


def json_values():
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                          max_size=4), max_leaves=20)


def deep_nesting(n: int, opener: str) -> bytes:
    close = "]" if opener == "[" else "}"
    inner = (opener if opener == "[" else '{"a":') * n
    return ('{"text": "hi", "x": ' + inner + "1" + close * n + "}").encode()


payloads = st.one_of(
    st.binary(max_size=6000),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(MARKUP), max_size=40).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
    st.text(st.characters(categories=["Cc", "Cf", "Co", "Zs", "Zl", "Zp", "Mn"]), max_size=100).map(
        lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(3900, 300_000).map(lambda n: b"a" * n),
    st.builds(deep_nesting, st.integers(1, 5000), st.sampled_from(["[", "{"])),
    st.builds(lambda n: b"[" * n, st.integers(1, 5000)),
    st.fixed_dictionaries(
        {"text": st.one_of(st.text(max_size=200), st.lists(st.sampled_from(MARKUP)).map("".join), json_values())},
        optional={"priority": st.one_of(st.sampled_from(["normal", "urgent", "URGENT", " urgent ", "panic"]),
                                        json_values()),
                  "chime": st.one_of(st.booleans(), json_values()), "extra": json_values()},
    ).map(lambda d: json.dumps(d).encode()),
    json_values().map(lambda v: json.dumps(v).encode()),
)


def assert_clean(req: AnnouncementRequest) -> None:
    assert isinstance(req, AnnouncementRequest)
    assert isinstance(req.text, str) and req.text and req.text == req.text.strip()
    assert any(ch.isalnum() for ch in req.text)
    assert "  " not in req.text
    assert not set(req.text) & set("<>*`\x1b")
    for ch in req.text:
        assert unicodedata.category(ch) not in {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"}, repr(ch)
    assert req.priority in PRIORITIES and isinstance(req.chime, bool)


def check(payload: bytes, max_bytes: int = 4096) -> str:
    try:
        req = parse_announcement(payload, max_bytes)
    except MqttError as exc:
        assert exc.code in CODES, exc.code
        assert exc.message and len(str(exc)) < 300
        return exc.code
    assert_clean(req)
    assert len(payload) <= max_bytes
    return "ok"


def test_fuzz_parse_announcement(record_property):
    tried: list[int] = [0]
    outcomes: dict[str, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(payloads)
    def run(payload: bytes) -> None:
        tried[0] += 1
        outcome = check(payload)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    print(f"\nparse_announcement fuzz: {tried[0]} inputs tried, outcomes {dict(sorted(outcomes.items()))}")
    record_property("fuzz_inputs", tried[0])
    assert tried[0] >= FUZZ_EXAMPLES
    assert outcomes.get("ok", 0) > 100 and len(outcomes) == 4  # every branch was exercised


@pytest.mark.parametrize("payload, code", [
    (b"Hello there", "ok"),
    (b"\xef\xbb\xbf{\"text\": \"bom then json\"}", "ok"),
    (b"[urgent] plain text that starts with a bracket", "ok"),
    (b'{"text": "[[[[[[{{{{ \\" brackets inside a string do not count"}', "ok"),
    (b'{"text": "hi", "x": [[[[[1]]]]]}', "mqtt-payload-invalid"),  # deeper than 4 levels
    (b'{"' + b'\\"' * 3000 + b'}', "mqtt-payload-invalid"),  # hostile escapes: linear scan, clear error
    (b"\xc3\x28", "mqtt-payload-not-utf8"),
    (b"\xed\xa0\x80", "mqtt-payload-not-utf8"),  # an encoded surrogate is not UTF-8
    (b'{"text": "' + b"\\u0000" * 10 + b'"}', "mqtt-payload-invalid"),
    (b'{"text": "x", "priority": "urgent", "chime": 1}', "mqtt-payload-invalid"),
    (b'{"text": "1' + b"0" * 9000 + b'"}', "mqtt-payload-too-large"),
    (b'{"text": "ok", "n": 1' + b"0" * 4500 + b"}", "mqtt-payload-invalid"),  # huge int, under the limit below
])
def test_known_edge_cases(payload, code):
    assert check(payload, max_bytes=8192) == code


def test_markup_and_controls_are_removed_but_words_stay():
    req = parse_announcement("<speak>Dinner\x00 is\u202e <b>ready</b>\x1b[31m &amp; hot</speak>".encode())
    assert req == AnnouncementRequest("Dinner is ready & hot")
    req = parse_announcement(b'{"text": "Leak in the **basement**", "priority": " URGENT ", "chime": true}')
    assert req == AnnouncementRequest("Leak in the basement", priority="urgent", chime=True)


WORDS = ["dinner", "is", "ready", "the", "washing", "machine", "has", "finished", "bus", "in", "5", "minutes",
         "Café", "ünïcödé", "door", "bell", "rang", "42"]
# noise between words, each known to vanish or to become a space: tags, markup characters, control and format
# characters, terminal escapes, entities of markup, odd whitespace
NOISE = ["<b>", "</b>", "<speak>", "</speak>", "<break time='9s'/>", "**", "`", "\x00", "\x07", "\x1b[31m",
         "\x1b]0;title\x07", "\u200b", "\u202e", "\ufeff", "\n", "\t", "\r\n", "\u2028", "\u3000", "&lt;i&gt;", ""]


def hostile_payloads(rng: random.Random, n: int) -> list[tuple[bytes, AnnouncementRequest | None]]:
    """`n` payloads, each with the announcement it must give (None: it must be dropped), written from how the
    payload was built, not by the parser under test."""

    def decorated(words: list[str]) -> str:
        return " ".join(rng.choice(NOISE) + w + rng.choice(NOISE) for w in words)

    out: list[tuple[bytes, AnnouncementRequest | None]] = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(1, 6))
        kind = rng.randrange(10)
        if kind <= 2:  # plain text with markup and controls around the words
            out.append((decorated(words).encode(), AnnouncementRequest(" ".join(words))))
        elif kind <= 4:  # the JSON form, priority spelled loosely, chime given or not
            prio = rng.choice(["normal", "urgent", " URGENT ", "Normal", None])
            obj: dict = {"text": decorated(words)}
            if prio is not None:
                obj["priority"] = prio
            chime = rng.choice([True, False, None])
            if chime is not None:
                obj["chime"] = chime
            out.append((json.dumps(obj).encode(), AnnouncementRequest(
                " ".join(words), (prio or "normal").strip().lower(), bool(chime))))
        elif kind == 5:  # random bytes that are not UTF-8 (0xff never occurs in UTF-8)
            out.append((b"\xff" + rng.randbytes(rng.randint(0, 3000)), None))
        elif kind == 6:  # over the 4096-byte limit
            out.append((("word " * rng.randint(820, 1200)).encode(), None))
        elif kind == 7:  # only noise: nothing speakable is left
            out.append(("".join(rng.choice(NOISE) for _ in range(rng.randint(0, 20))).encode(), None))
        else:  # JSON that breaks the schema
            bad = rng.choice([{"text": 5}, {"text": ["hi"]}, {"text": "hi", "priority": "panic"},
                              {"text": "hi", "chime": 1}, {"text": "hi", "x": [[[[[1]]]]]}, {"words": "hi"}])
            out.append((json.dumps(bad).encode(), None))
    return out


def test_random_payloads_through_a_real_broker_never_break_the_link(tmp_path, record_property):
    """Hostile and valid payloads through mosquitto into a running MqttLink: exactly the valid ones come out, in
    order, as the test built them; the link stays connected."""
    rng = random.Random(20240601)
    cases = hostile_payloads(rng, BROKER_PAYLOADS)
    sent = [p for p, _ in cases]
    expected = [want for _, want in cases if want is not None]
    assert 0 < len(expected) < len(sent)
    heard = Collector()
    broker = Broker(tmp_path)
    broker.start()
    link = MqttLink(broker.mqtt_config(), ApplianceConfig(room="fuzz"), heard, reconnect_min_s=0.2,
                    reconnect_max_s=2.0)
    try:
        link.start()
        assert link.wait_connected(60)
        with Client(broker) as pub:
            for p in sent:
                pub.publish(link.announce_topic, p)
            pub.publish(link.announce_topic, "end of fuzz")
        assert heard.wait_for(lambda got: got and got[-1] == AnnouncementRequest("end of fuzz"), 60)
        got = heard.snapshot()[:-1]
        assert got == expected  # exactly the valid ones, in order; every hostile one dropped
        assert link.connected
    finally:
        link.stop(flush_timeout=2)
        broker.stop()
    record_property("broker_fuzz_payloads", len(sent))
