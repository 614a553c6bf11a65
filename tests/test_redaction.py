"""The one redaction mechanism (issue 11.1): secrets (the PIN in every spoken and written form, passwords, API keys,
codes) are masked by `Redactor` everywhere text leaves the process: events, logs, the audit log, `config show` and
`doctor`, while ordinary numbers (amounts, times) stay readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voice_agent.config import parse_config
from voice_agent.privacy.redact import MASK, Redactor, is_secret_key

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
[appliance]
data_dir = "DATA"
[llm]
base_url = "http://alice:llm-pass-9@127.0.0.1:9/v1"
api_key = "sk-llm-key-123"
[mqtt]
host = "127.0.0.1"
port = 9
username = "voice"
password = "mqtt-pass-77"
[safety]
pin = "4711"
[[mcp_servers]]
name = "home"
command = "true"
env = {HOME_TOKEN = "tok-abc-999", LANG = "C"}
"""
SECRETS = ("llm-pass-9", "sk-llm-key-123", "mqtt-pass-77", "4711", "tok-abc-999")


@pytest.fixture
def redactor() -> Redactor:
    return Redactor.from_config(parse_config(CONFIG.replace("DATA", "/tmp/x"), "t.toml"))


@pytest.mark.parametrize("said,kept", [
    ("hey jarvis my bank pin is 4711, and I think I'm pregnant", "I think I'm pregnant"),
    ("yes four seven one one", "yes"),
    ("Yes, 4-7-1-1.", "Yes"),
    ("yes, 47 11 please", "please"),
    ("My bank bid is 471.", "My bank bid is"),  # a recognition error one digit off the PIN is still the PIN
    ("yes 4712", "yes"),
    ("the door code is one two three four", "the door code is"),
    ("call five five five one two three four", "call"),
    ("my password is swordfish.", "my password is"),
    ("password=hunter3 user=bob", "user=bob"),
    ('{"password": "s3cret", "to": "bob"}', '"to": "bob"'),
    ("GET http://bob:pw@host:8000/v1", "http://bob:"),
    ("broker password mqtt-pass-77 refused", "refused"),
])
def test_secrets_are_masked_in_every_form(redactor, said, kept):
    out = redactor.text(said)
    assert MASK in out and kept in out, out
    for secret in ("4711", "471", "4712", "four seven", "1234", "one two three four", "swordfish", "hunter3",
                   "s3cret", ":pw@", "mqtt-pass-77", "47 11", "4-7-1-1"):
        assert secret not in out, (secret, out)


@pytest.mark.parametrize("text", [
    "Your electricity invoice of 84.20 EUR is due on the 30th.",
    "transfer 5000 dollars to John",
    "set the thermostat to 21 degrees",
    "exit_code=1 returncode=2 max_tokens=256",
    "Yes, one more thing",
    "turn on light one",
])
def test_ordinary_numbers_stay(redactor, text):
    assert redactor.text(text) == text


def test_answers_to_a_confirmation_lose_every_digit(redactor):
    assert redactor.answer("yes 9 8 please") == f"yes {MASK} please"
    assert redactor.answer("yes") == "yes"


def test_structured_arguments(redactor):
    args = {"password": "x", "code": "1234", "to": "bob", "note": "pin is 4711", "n": [{"token": "abc"}], "amount": 5}
    assert redactor.mapping(args) == {"password": MASK, "code": MASK, "to": "bob", "note": f"pin is {MASK}",
                                      "n": [{"token": MASK}], "amount": 5}
    assert [is_secret_key(k) for k in ("api_key", "door_code", "client_secret", "max_tokens", "keepalive_s")] == \
        [True, True, True, False, False]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")}
    return subprocess.run([sys.executable, "-m", "voice_agent.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def test_config_show_and_doctor_never_print_a_secret(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.replace("DATA", str(tmp_path / "data")))
    shown = cli("--config", str(cfg), "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert 'username = "voice"' in shown.stdout and 'LANG = "C"' in shown.stdout  # the rest is shown as written
    assert shown.stdout.count(MASK) == 5, shown.stdout
    doctor = cli("--config", str(cfg), "-v", "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert "127.0.0.1:9" in checks["language model"]["detail"]  # the URL is there, its password is not
    assert "privacy" in checks
    for out in (shown.stdout, doctor.stdout, doctor.stderr):
        for secret in SECRETS:
            assert secret not in out, (secret, out[-2000:])
    broken = tmp_path / "broken.toml"
    broken.write_text(CONFIG.replace("DATA", str(tmp_path)) + "[bogus]\n")  # invalid: still shown, still masked
    shown = cli("--config", str(broken), "config", "show")
    assert "mqtt-pass-77" not in shown.stdout and "sk-llm-key-123" not in shown.stdout
