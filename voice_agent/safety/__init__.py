"""Catastrophic-action classifier: decides allow / confirm / deny for a proposed tool call, explains why in
plain words, and says concretely what an action would do so a person can confirm it."""

from .action import ProposedAction, RiskDecision, action_from_json
from .classifier import RiskClassifier
from .classify_cli import run_classify_stream
from .describe import affirmative, describe_action

__all__ = [
           "ProposedAction",
           "RiskClassifier",
           "RiskDecision",
           "action_from_json",
           "affirmative",
           "describe_action",
           "run_classify_stream",
]
