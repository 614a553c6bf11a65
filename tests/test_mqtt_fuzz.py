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


def test_random_payloads_through_a_real_broker_never_break_the_link(tmp_path, record_property):
    rng = random.Random(20240601)
    examples = [b"Dinner is ready", b'{"text": "ok"}', b"\xff" * 10, b"x" * 5000, b"[" * 4000,
                b'{"text": {"text": {"text": "x"}}}', b"\x00\x1b[2J<script>"]
    sent = [rng.choice(examples) if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 6000))
            for _ in range(BROKER_PAYLOADS)]
    for i in range(0, len(sent), 7):  # mix in mutated markup/JSON
        sent[i] = "".join(rng.choice(MARKUP) for _ in range(rng.randint(0, 30))).encode("utf-8", "surrogatepass")
    expected = [r for r in (_try(p) for p in sent) if r is not None]
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
        for req in got:
            assert_clean(req)
        assert link.connected
    finally:
        link.stop(flush_timeout=2)
        broker.stop()
    print(f"\nbroker fuzz: {len(sent)} payloads through mosquitto, {len(expected)} valid, "
          f"{len(sent) - len(expected)} dropped")
    record_property("broker_fuzz_payloads", len(sent))


def _try(payload: bytes) -> AnnouncementRequest | None:
    try:
        return parse_announcement(payload)
    except MqttError:
        return None
