"""`voice-agent classify`: JSON Lines in, one decision per line out.

Input, one object per line: {"tool": str, "arguments": object, "description"?: str, "user_request"?: str,
"untrusted_context"?: [str], "provenance"?: {arg: source}, "risk"?: {reversible, costs_money, ...}}.
Output, one line per input line, in order: {"catastrophic", "decision", "score", "reasons"}, or {"error": "..."}
for a malformed line (the rest still run). Blank lines are skipped and produce no output.
Exit status: 0 when every line was classified, 1 when at least one line was malformed, 2 on a bad config."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..config import SafetyConfig, load_config
from ..errors import VoiceAgentError
from .action import action_from_json
from .classifier import RiskClassifier


def run_classify_stream(stdin: TextIO, stdout: TextIO, safety: SafetyConfig | None = None) -> int:
    classifier = RiskClassifier(safety)
    failed = False
    for number, line in enumerate(stdin, 1):
        if not line.strip():
            continue
        try:
            action = action_from_json(json.loads(line))
            decision = classifier.classify(action)
            out = {"catastrophic": decision.catastrophic, "decision": decision.decision, "score": decision.score,
                   "reasons": list(decision.reasons)}
        except json.JSONDecodeError as exc:
            failed = True
            out = {"error": f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"}
        except VoiceAgentError as exc:
            failed = True
            out = {"error": f"line {number}: {exc.message}"}
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-agent classify", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="config file whose [safety] section to use (thresholds, household, overrides)")
    ns = parser.parse_args(argv)
    try:
        safety = load_config(ns.config).safety
    except VoiceAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_classify_stream(sys.stdin, sys.stdout, safety)


if __name__ == "__main__":
    sys.exit(main())
