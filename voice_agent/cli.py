"""`voice-agent`: the command line. Every command explains itself with --help."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import VoiceAgentError

EPILOG = """\
examples:
  voice-agent run                                   the live appliance (microphone + speaker)
  voice-agent process cmd.wav --json                one spoken turn from a file, events as JSON lines
  voice-agent process buy.wav yes.wav --out r.wav   a two-turn conversation; the replies saved as WAV
  voice-agent transcribe speech.wav                 print what was said
  voice-agent say "Dinner is ready" --out d.wav     synthesise speech
  voice-agent doctor                                check devices, models, broker and LLM; print fixes
  echo '{"tool":"bank_transfer","arguments":{"to":"x","amount":5000}}' | voice-agent classify
  voice-agent log                                   what the appliance did recently
  voice-agent log --forget --older-than 7           erase what was said and done (text) older than a week

configuration: --config PATH, else $VOICE_AGENT_CONFIG, ~/.config/voice-agent/config.toml,
/etc/voice-agent/config.toml, else the embedded sample home (`voice-agent config show` prints it).
"""


def _config(args):
    from .config import load_config
    from .privacy.journal import configure, text_allowed
    from .privacy.redact import Redactor

    cfg = load_config(args.config)
    # from here on, printed events and log lines follow the configuration's privacy rule and mask its secrets
    configure(Redactor.from_config(cfg), text_allowed(args.verbose, cfg.appliance.journal_text))
    return cfg


def _progress(msg: str) -> None:
    print(f"… {msg}", file=sys.stderr, flush=True)


# ---- commands -------------------------------------------------------------------------------------------------
def cmd_process(args) -> int:
    from .app import build_app, human_printer, json_printer, load_engines
    from .audio import read_wav, write_wav
    from .audio_io import CollectingSpeaker, FileSource
    from .privacy.journal import printed_view

    cfg = _config(args)
    clips = [read_wav(p) for p in args.files]  # bad audio fails here, before anything loads

    async def main() -> int:
        engines = load_engines(cfg, wake=not args.no_wake, progress=_progress if not args.json else lambda s: None)
        speaker = CollectingSpeaker(realtime=not args.fast, rate=engines.tts.rate)
        app = await build_app(cfg, engines, speaker, wake_enabled=not args.no_wake, use_mqtt=not args.no_mqtt,
                              use_llm=not args.no_llm)
        app.bus.subscribe((json_printer if args.json else human_printer)(sys.stdout, printed_view()))
        if app.mqtt is not None:
            app.mqtt.wait_connected(2.0)
        try:
            source = FileSource(clips, fast=args.fast, ready=app.appliance.wait_ready)
            await app.appliance.run(source)
            await app.appliance.speech.wait_idle()
        finally:
            await app.aclose()
        if args.out:
            write_wav(args.out, speaker.audio(), speaker.rate)
            if not args.json:
                print(f"reply audio written to {args.out}", file=sys.stderr)
        return 0

    return asyncio.run(main())


def cmd_transcribe(args) -> int:
    from .audio import read_wav
    from .intents import LocalIntents
    from .stt import Transcriber

    cfg = _config(args)
    clip = read_wav(args.file)
    stt = Transcriber(cfg.stt, LocalIntents(cfg.devices).stt_prompt() if args.bias else None)
    result = stt.transcribe_long(clip.pcm, biased=args.bias)
    if args.json:
        print(json.dumps({"text": result.text, "stt_ms": round(result.seconds * 1000), "audio_s": round(result.audio_s, 3)}))
    else:
        print(result.text)
    return 0


def cmd_say(args) -> int:
    from .audio import write_wav
    from .tts import Synthesizer

    cfg = _config(args)
    tts = Synthesizer(cfg.tts)
    pcm = tts.synthesize(args.text)
    if pcm.size == 0:
        print("error: nothing to say", file=sys.stderr)
        return 2
    write_wav(args.out, pcm, tts.rate)
    print(f"{args.out}: {len(pcm) / tts.rate:.2f} s at {tts.rate} Hz", file=sys.stderr)
    return 0


def cmd_run(args) -> int:
    from .live import run_live
    from .shutdown import end_process

    end_process(asyncio.run(run_live(_config(args), wake_enabled=not args.no_wake, json_events=args.json,
                                     private_broker=args.private_broker)))


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor(_config(args), as_json=args.json)


def cmd_classify(args) -> int:
    from .safety import run_classify_stream

    return run_classify_stream(sys.stdin, sys.stdout, _config(args).safety)


def cmd_log(args) -> int:
    from .audit import AuditLog, format_log
    from .privacy.redact import Redactor

    cfg = _config(args)
    path = cfg.data_dir / "audit.db"
    if args.older_than is not None and not args.forget:
        print("error: --older-than goes with --forget", file=sys.stderr)
        return 2
    if not path.exists():
        print(f"no actions recorded yet ({path} does not exist)")
        return 0
    audit = AuditLog(path, redactor=Redactor.from_config(cfg))
    try:
        if args.forget:
            from .privacy.erasure import erase

            days = args.older_than
            done = erase(audit, None if days is None else audit.clock() - days * 86400.0)
            scope = "all actions" if days is None else f"the actions older than {days:g} day(s)"
            print(f"erased what was said and done in {done.rows} of {scope}"
                  + ("" if done.compacted or not done.rows else
                     " (another process is reading the log: the file is compacted at the next erasure)"))
            return 0
        entries = audit.recent(args.limit)
        if args.json:
            for e in entries:
                print(json.dumps({k: getattr(e, k) for k in e.__dataclass_fields__}, default=list))
        else:
            print(format_log(entries))
    finally:
        audit.close()
    return 0


def cmd_models(args) -> int:
    from .models import main as models_main

    return models_main(args.models_args)


def cmd_config(args) -> int:
    from .config import default_text, load_config

    if args.action == "show":
        from .privacy.redact import Redactor

        text = default_text() if args.config is None else Path(args.config).read_text()
        try:
            redactor = Redactor.from_config(load_config(args.config))
        except VoiceAgentError:  # an invalid file is still shown, with secret-named settings masked
            redactor = Redactor()
        print(redactor.config_text(text), end="")  # secrets never reach a terminal or a log
        return 0
    cfg = load_config(args.config)
    print(f"ok: {cfg.source} ({len(cfg.devices)} devices, {len(cfg.mcp_servers)} MCP servers)")
    return 0


def cmd_bench(args) -> int:
    from .bench.cli import main as bench_main

    return bench_main(args)


# ---- parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="voice-agent", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="A private voice assistant for the home. Everything runs on this machine: wake word, speech "
                    "recognition, understanding, speech. Risky actions are confirmed out loud first.")
    ap.add_argument("--version", action="version", version=f"voice-agent {__version__}")
    ap.add_argument("--config", metavar="PATH", help="configuration file (TOML)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="debug logging on stderr, and what was said and replied in printed events (under systemd "
                         "only with [appliance] journal_text = true)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn, help_: str, desc: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=desc or help_,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("run", cmd_run, "run the live appliance (microphone, speaker, MQTT, LLM)",
            "Listen for the wake word on the microphone and answer through the speaker. With no capture device, "
            "says so and runs one turn on a bundled sample recording instead. Under systemd it notifies READY "
            "once models are warm and pings the watchdog.")
    p.add_argument("--no-wake", action="store_true", help="do not wait for the wake word (every utterance is a command)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines on stdout")
    p.add_argument("--private-broker", action="store_true",
                   help="if the configured MQTT broker is on this machine and not running, start a private mosquitto "
                        "for this session (make run does this)")

    p = add("process", cmd_process, "run spoken turns from WAV files through the live pipeline",
            "Feed WAV files (the turns of one conversation) through exactly the pipeline the microphone uses, at "
            "real-time pace unless --fast. Each file is followed by silence and the next one starts when the "
            "appliance is ready again, as a person would wait. Any rate/width/channels are converted.")
    p.add_argument("files", nargs="+", metavar="WAV")
    p.add_argument("--out", metavar="WAV", help="write everything the appliance said to this file")
    p.add_argument("--json", action="store_true",
                   help="one JSON event per line: type, t_ms (ms since the first sample was fed) and fields")
    p.add_argument("--no-wake", action="store_true", help="the files hold no wake word")
    p.add_argument("--fast", action="store_true", help="feed audio as fast as it is consumed")
    p.add_argument("--no-mqtt", action="store_true", help="do not connect to the MQTT broker")
    p.add_argument("--no-llm", action="store_true", help="local commands only; no language model")

    p = add("transcribe", cmd_transcribe, "print the text spoken in a WAV file")
    p.add_argument("file", metavar="WAV")
    p.add_argument("--json", action="store_true", help="print text and timing as JSON")
    p.add_argument("--bias", action="store_true", help="bias recognition toward the configured device names")

    p = add("say", cmd_say, "synthesise speech to a WAV file")
    p.add_argument("text")
    p.add_argument("--out", required=True, metavar="WAV")

    p = add("doctor", cmd_doctor, "check audio devices, models, broker and LLM; print a fix for each failure")
    p.add_argument("--json", action="store_true")

    add("classify", cmd_classify, "classify proposed actions (JSON Lines on stdin) as allow/confirm/deny",
        'Input lines: {"tool": str, "arguments": {...}, "description"?: str, "user_request"?: str, '
        '"untrusted_context"?: [str]}.\nOutput lines: {"catastrophic": bool, "decision": "allow"|"confirm"|"deny", '
        '"score": float, "reasons": [str]}; a malformed line gives {"error": "..."} and the rest still run.')

    p = add("log", cmd_log, "show the actions the appliance proposed, confirmed, ran or refused; --forget erases",
            "Show the audit log, newest first. With --forget, erase its personal text instead (what was said, the "
            "answers to confirmations, arguments, results, summaries): of every action, or with --older-than DAYS "
            "of those older than that. What stays is when, which tool, the decision and the status. The file is "
            "rebuilt so the erased text leaves the disk. The appliance does this by itself, hourly, past "
            "[appliance] transcript_retention_days.")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--forget", action="store_true", help="erase the personal text of recorded actions")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="with --forget: only actions older than DAYS")

    p = add("models", cmd_models, "install, verify or list the offline models (models/manifest.toml)")
    p.add_argument("models_args", nargs=argparse.REMAINDER, metavar="install [NAME…] | verify | list")

    p = add("config", cmd_config, "print the embedded default config, or check a config file")
    p.add_argument("action", choices=["show", "check"])

    p = add("bench", cmd_bench, "measure latency, CPU and memory against Home Assistant's Wyoming services",
            "Speak a fixed set of commands (espeak-ng voices, clean and noisy) into the full appliance at microphone "
            "pace, then the same audio into Home Assistant's wyoming-faster-whisper and wyoming-piper as its add-ons "
            "ship them (beam 1, no prompt, 0.7 s silence endpoint; a second row with our home prompt), in the same "
            "run. Latency runs from the scheduled capture of the last speech sample to the first reply audio, on "
            "both sides; p50/p95 count every command (no reply = a timeout at --limit-s). Takes ~15 min in full, "
            "~2 min with --quick. Example: voice-agent bench --quick --json")
    p.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    p.add_argument("--quick", action="store_true", help="fewer commands and a shorter CPU window")
    p.add_argument("--no-reference", action="store_true", help="skip the Wyoming reference")
    p.add_argument("--limit-s", type=float, default=None, metavar="S",
                   help="a command with no reply audio this long after it ends counts as a timeout at S (default 10)")
    p.add_argument("--update-readme", action="store_true", help="rewrite the results table in README.md")
    p.add_argument("--vad-sweep", action="store_true",
                   help="also compare VADs and end-of-speech silences (words cut off against latency)")
    p.add_argument("--llm-sweep", action="store_true",
                   help="also measure first audio against the LLM server's time to first token")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from .privacy.journal import install_log_filter

    install_log_filter()  # secrets masked in every log line; no personal text unless allowed
    try:
        return int(args.fn(args) or 0)
    except VoiceAgentError as exc:
        print(f"error [{exc.code}]: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
