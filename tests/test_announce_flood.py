"""Announcement floods (issue 11.3) through the real appliance: the queue of announcements waiting to be spoken is
bounded (urgent ones kept and spoken first, duplicates merged, one log line per flood), MQTT announcements are rate
limited per topic, and the wake word silences a long announcement even with barge-in off, after which the command
that follows it runs."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
from support.appliance import SilentVoice, run_clips
from support.broker import Client, Collector
from support.speech import espeak

from voice_agent.announcements import AnnouncementRequest
from voice_agent.audio import AudioClip, silence

LONG = ("Here is the weekly household news. The recycling goes out on Tuesday this week instead of Wednesday. "
        "The plumber comes on Thursday morning between eight and ten to look at the leaking tap in the upstairs "
        "bathroom. The library books are due back on Friday. Grandma visits on Saturday afternoon and stays for "
        "dinner, so please tidy the guest room. The car needs its inspection before the end of the month.")


def test_the_wake_word_silences_a_long_announcement_and_the_command_after_it_runs(cfg, engines):
    """Barge-in is off (the default): before issue 11 the microphone stayed gated for the whole announcement, so the
    wake word and the command said over it were lost and the announcement played to its end (~25 s)."""
    assert cfg.audio.barge_in is False

    async def announce(app, _n):
        app.appliance.announce(AnnouncementRequest(LONG))

    wake = espeak("hey jarvis", voice="en-us", pad_ms=(0, 250)).pcm
    command = espeak("turn off the kitchen lights", voice="en-us", pad_ms=(0, 300)).pcm
    clip = AudioClip(np.concatenate([silence(5000), wake, command]))
    from voice_agent.audio_io import CollectingSpeaker

    speaker = CollectingSpeaker(realtime=True, rate=engines.tts.rate)
    run = asyncio.run(run_clips(cfg, engines, [clip], wake=True, fast=False, use_llm=False, use_mqtt=False,
                                speaker=speaker, setup=announce))
    kinds = run.types()
    assert kinds.count("announcement") == 1, kinds
    first_audio = run.of("first_audio")[0]["t_ms"]
    wakes = run.of("wake")
    assert wakes and wakes[0]["t_ms"] > first_audio, run.events
    assert [(e["name"], e["arguments"]) for e in run.of("tool_call")] == [
        ("set_light", {"device": "kitchen light", "on": False})], run.events
    played_s = len(speaker.audio()) / speaker.rate
    full_s = len(engines.tts.synthesize(LONG)) / engines.tts.rate
    print(f"\nannouncement silenced by the wake word after {played_s:.1f} s of {full_s:.1f} s "
          f"(including the reply to the command)")
    assert played_s < full_s / 2, (played_s, full_s)


def test_an_announcement_that_says_the_wake_word_cannot_silence_itself(cfg, engines):
    """Without echo cancellation the microphone hears the speaker: an announcement containing "hey Jarvis" must not
    cut itself off and open the microphone to the room."""
    from voice_agent.announcer import Announcer

    class Speech:
        busy = True

    a = Announcer(None, Speech(), lambda: False, lambda: 1, lambda: None, wake_phrase="hey jarvis")  # type: ignore[arg-type]
    a.current = AnnouncementRequest("Hey, Jarvis! The door is open.")
    assert not a.interruptible
    a.current = AnnouncementRequest("The door is open.")
    assert a.interruptible


@pytest.mark.slow
def test_the_queue_is_bounded_urgent_first_duplicates_merged_one_log_line(cfg, engines, caplog):
    """32 announcements queued at once against a queue of 10: ten are kept, the two urgent ones take the places of
    the two newest normal ones and are spoken first, a duplicate is merged, the rest is dropped with one line."""
    from voice_agent.pipeline import Engines

    silent = Engines(stt=engines.stt, tts=SilentVoice(), intents=engines.intents, wake=None)
    caplog.set_level(logging.INFO, logger="voice_agent.announcer")
    seen = {}

    async def flood(app, _n):
        for i in range(30):
            app.appliance.announce(AnnouncementRequest(f"Normal announcement {i}."))
        app.appliance.announce(AnnouncementRequest("Normal announcement 3."))
        for i in range(2):
            app.appliance.announce(AnnouncementRequest(f"Urgent announcement {i}.", priority="urgent"))
        seen["waiting"] = app.appliance.announcer.waiting

    async def drained(app, _n):
        a = app.appliance.announcer
        for _ in range(400):
            if not a.waiting and a.current is None:
                break
            await asyncio.sleep(0.05)
        seen.update(dropped=a.dropped, merged=a.merged)

    run = asyncio.run(run_clips(cfg, silent, [AudioClip(silence(500))], use_mqtt=False, use_llm=False,
                                setup=flood, after=drained))
    spoken = [e["text"] for e in run.of("announcement")]
    assert seen["waiting"] == cfg.appliance.announcement_queue == 10
    assert spoken == ["Urgent announcement 0.", "Urgent announcement 1."] + [
        f"Normal announcement {i}." for i in range(8)], spoken
    assert (seen["dropped"], seen["merged"]) == (22, 1), seen
    lines = [r.getMessage() for r in caplog.records if r.name == "voice_agent.announcer"]
    assert len(lines) == 1 and "queue full" in lines[0], lines


def test_announcements_are_rate_limited_per_topic_over_a_real_broker(broker, caplog):
    """20 announcements in a burst on one topic: the burst allowance (3) is spoken, the rest dropped with one log
    line; once the bucket refills (the limiter's clock is moved, not slept) the next one is accepted again."""
    from voice_agent.config import ApplianceConfig
    from voice_agent.mqtt import MqttLink

    heard = Collector()
    link = MqttLink(broker.mqtt_config(client_id="va-rate", announce_burst=3, announce_per_minute=6),
                    ApplianceConfig(room="den"), heard, reconnect_min_s=0.2, reconnect_max_s=2.0)
    now = [1000.0]
    link.limiter.clock = lambda: now[0]
    caplog.set_level(logging.INFO, logger="voice_agent.announce_limits")
    link.start()
    try:
        assert link.wait_connected(60)
        with Client(broker) as pub:
            for i in range(20):
                pub.publish(link.announce_topic, json.dumps({"text": f"Flood {i}."}))
            assert heard.wait_for(lambda got: len(got) >= 3, 30)
            assert not heard.wait_for(lambda got: len(got) > 3, 2)
            assert [r.text for r in heard.snapshot()] == ["Flood 0.", "Flood 1.", "Flood 2."]
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and link.announce_topic in warnings[0], warnings
            now[0] += 10.0  # 6 a minute: one token back after 10 s
            pub.publish(link.announce_topic, "After the flood.")
            assert heard.wait_for(lambda got: len(got) == 4, 30)
            assert heard.snapshot()[-1].text == "After the flood."
        assert link.limiter.dropped == 17
    finally:
        link.stop(flush_timeout=1)


def test_the_rate_limit_is_kept_per_topic():
    from voice_agent.announce_limits import TopicRateLimiter

    lim = TopicRateLimiter(burst=2, per_minute=60, clock=lambda: 0.0)
    assert [lim.allow("a") for _ in range(3)] == [True, True, False]
    assert [lim.allow("b") for _ in range(3)] == [True, True, False]  # another publisher's topic is unaffected
    assert TopicRateLimiter(burst=1, per_minute=0).allow("a") and TopicRateLimiter(burst=1, per_minute=0).allow("a")


def test_mqtt_3_1_1_still_works_for_brokers_without_mqtt_5(broker):
    from voice_agent.config import ApplianceConfig
    from voice_agent.mqtt import MqttLink

    heard = Collector()
    link = MqttLink(broker.mqtt_config(client_id="va-311", protocol="3.1.1"), ApplianceConfig(room="attic"), heard)
    link.start()
    try:
        assert link.wait_connected(60)
        with Client(broker) as pub:
            pub.publish(link.announce_topic, "Old broker, still fine.")
        assert heard.wait_for(lambda got: got == [AnnouncementRequest("Old broker, still fine.")], 30)
    finally:
        link.stop(flush_timeout=1)
