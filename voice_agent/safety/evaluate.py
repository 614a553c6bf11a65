"""Evaluate the classifier on the labelled sets in `voice_agent/safety/data/`.

`dev.jsonl` was used to build and tune the rules; `heldout.jsonl` was written first and never tuned on.
Run: `python -m voice_agent.safety.evaluate [--json] [--errors]`.

Figures, per split:
- recall: share of catastrophic actions that were held back (confirm or deny), the number that must be ~1.0;
- needless confirmation rate: share of actions labelled harmless *and expected to run* that got confirm or deny;
- precision / F1: of the held-back actions, how many were catastrophic (actions held back only because their
  arguments came from untrusted content are excluded from both sides of precision, as holding them is required);
- flag precision / recall / F1: the `catastrophic` flag itself against the label;
- decision accuracy: share whose decision equals the expected one (allow / confirm / deny);
- decisions per second on one core."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..config import SafetyConfig
from .action import action_from_json
from .classifier import RiskClassifier

SPLITS = ("dev", "heldout")
EVAL_SAFETY = SafetyConfig(
    money_threshold=50.0,
    household=["Sam", "Alex", "Mia", "sam@rivera.home", "alex@rivera.home", "mia@rivera.home"],
    trusted_contacts=["Grandma", "grandma@mail.example", "Dr. Lee", "dr.lee@clinic.example",
                      "accountant@taxhelp.example"],
)
"""The household the labelled sets were written for."""


def load_split(split: str) -> list[dict[str, Any]]:
    text = resources.files(__package__).joinpath("data", f"{split}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Result:
    record: dict[str, Any]
    decision: str
    catastrophic: bool
    score: float
    reasons: tuple[str, ...]


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 1.0


def run(records: list[dict[str, Any]], classifier: RiskClassifier) -> tuple[list[Result], float]:
    actions = [action_from_json(r) for r in records]
    results = []
    for record, action in zip(records, actions):
        d = classifier.classify(action)
        results.append(Result(record, d.decision, d.catastrophic, d.score, d.reasons))
    repeat = max(1, 4000 // max(len(actions), 1))
    start = time.perf_counter()
    for _ in range(repeat):
        for action in actions:
            classifier.classify(action)
    elapsed = time.perf_counter() - start
    return results, (repeat * len(actions)) / elapsed if elapsed > 0 else float("inf")


def metrics(results: list[Result], per_second: float) -> dict[str, Any]:
    cat = [r for r in results if r.record["catastrophic"]]
    mild = [r for r in results if not r.record["catastrophic"]]
    mild_expected_allow = [r for r in mild if r.record.get("expected", "allow") == "allow"]
    held = lambda r: r.decision != "allow"
    tp = sum(held(r) for r in cat)
    fp = sum(held(r) for r in mild_expected_allow)
    recall, precision = _ratio(tp, len(cat)), _ratio(tp, tp + fp)
    ftp = sum(r.catastrophic for r in cat)
    ffp = sum(r.catastrophic for r in mild)
    frecall, fprecision = _ratio(ftp, len(cat)), _ratio(ftp, ftp + ffp)
    f1 = lambda p, q: round(2 * p * q / (p + q), 4) if p + q else 0.0
    with_expected = [r for r in results if "expected" in r.record]
    return {
        "records": len(results),
        "tools": len({r.record["tool"] for r in results}),
        "tools_without_metadata": len({r.record["tool"] for r in results if "risk" not in r.record}),
        "catastrophic": len(cat),
        "recall": recall,
        "needless_confirmation_rate": _ratio(fp, len(mild_expected_allow)) if mild_expected_allow else 0.0,
        "precision": precision,
        "f1": f1(precision, recall),
        "flag_precision": fprecision,
        "flag_recall": frecall,
        "flag_f1": f1(fprecision, frecall),
        "decision_accuracy": _ratio(sum(r.decision == r.record["expected"] for r in with_expected), len(with_expected)),
        "untrusted_allowed": sum(r.decision == "allow" for r in results
                                 if r.record.get("provenance") and set(r.record["provenance"].values())
                                 & {"message", "web", "tool_result", "announcement"}),
        "decisions_per_second": round(per_second),
    }


def errors(results: list[Result]) -> list[dict[str, Any]]:
    return [{"id": r.record.get("id"), "tool": r.record["tool"], "arguments": r.record["arguments"],
             "label": r.record["catastrophic"], "expected": r.record.get("expected"), "got": r.decision,
             "flag": r.catastrophic, "score": r.score, "reasons": list(r.reasons), "note": r.record.get("note", "")}
            for r in results
            if r.decision != r.record.get("expected", r.decision) or r.catastrophic != r.record["catastrophic"]]


def evaluate(splits: tuple[str, ...] = SPLITS, safety: SafetyConfig = EVAL_SAFETY) -> dict[str, Any]:
    classifier = RiskClassifier(safety)
    report: dict[str, Any] = {}
    everything: list[Result] = []
    speeds = []
    for split in splits:
        results, speed = run(load_split(split), classifier)
        everything += results
        speeds.append(speed)
        report[split] = metrics(results, speed) | {"errors": errors(results)}
    report["all"] = metrics(everything, min(speeds)) | {"errors": []}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voice_agent.safety.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--errors", action="store_true", help="list every record the classifier got wrong")
    parser.add_argument("--split", choices=SPLITS, action="append", help="only this split (repeatable)")
    ns = parser.parse_args(argv)
    report = evaluate(tuple(ns.split) if ns.split else SPLITS)
    if ns.json:
        if not ns.errors:
            report = {k: {m: v for m, v in val.items() if m != "errors"} for k, val in report.items()}
        print(json.dumps(report, indent=2))
        return 0
    keys = ["records", "tools", "tools_without_metadata", "catastrophic", "recall", "needless_confirmation_rate",
            "precision", "f1", "flag_precision", "flag_recall", "flag_f1", "decision_accuracy", "untrusted_allowed",
            "decisions_per_second"]
    names = list(report)
    print(f"{'':28}" + "".join(f"{n:>12}" for n in names))
    for key in keys:
        print(f"{key:28}" + "".join(f"{report[n][key]:>12}" for n in names))
    if ns.errors:
        for name in names:
            for e in report[name]["errors"]:
                print(f"\n[{name}] {e['id']} {e['tool']} {json.dumps(e['arguments'])}\n  label={e['label']} "
                      f"expected={e['expected']} got={e['decision'] if 'decision' in e else e['got']} flag={e['flag']} "
                      f"score={e['score']} note={e['note']}\n  reasons: {'; '.join(e['reasons'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
