"""Checks for notebook 09's exercises."""
from __future__ import annotations

import math

from . import NOT_DONE, Feedback, graduated, not_done


def check_independent_recall(answer, *, byte_accuracy: float, exact_accuracy: float, value_bytes: int = 4) -> Feedback:
    """Exercise 09.1: if each value byte were right independently with probability p, a whole record would be p^n."""
    if not_done(answer):
        return NOT_DONE
    truth = byte_accuracy ** value_bytes
    if math.isclose(float(answer), truth, rel_tol=1e-3):
        relation = "above" if exact_accuracy > truth else "below"
        return Feedback(True, f"{truth:.4f}. The measured exact recall, {exact_accuracy:.4f}, lies {relation} it. "
                              "Above means the bytes are not independent: a record tends to be recalled whole or not "
                              "at all, as if stored as one unit. Next: is the same true of the 16-expert model?")
    if math.isclose(float(answer), byte_accuracy * value_bytes, rel_tol=1e-3):
        return Feedback(False, "independent events that must all happen multiply their probabilities; they do not add.")
    if math.isclose(float(answer), byte_accuracy, rel_tol=1e-3):
        return Feedback(False, "that is one byte; a record is right only if all of its value bytes are.")
    return graduated("09.1", nudge="a fact is recalled exactly only when every one of its value bytes is right.",
                     method=f"the chance that all {value_bytes} independent bytes are right, each with probability p.")


def check_fact_experts(answer, *, fact_share) -> Feedback:
    """Exercise 09.2: how many experts take at least 90% of their tokens from facts?"""
    if not_done(answer):
        return NOT_DONE
    busy = fact_share[~fact_share.isnan()]
    truth = int((busy >= 0.9).sum())
    if answer == truth:
        mostly_sums = int((busy <= 0.1).sum())
        return Feedback(True, f"{truth} of {len(fact_share)} experts work (almost) only on facts and {mostly_sums} "
                              "(almost) only on sums. Part of that split comes free: facts are letters, sums are "
                              "digits, and even an untrained router separates them somewhat. Next: compare with "
                              "`task.fact_share_by_expert(build_model(parrots_config(16)))`.")
    if answer == int((busy <= 0.1).sum()):
        return Feedback(False, "that counts the experts that get at most 10% of their tokens from facts: the sums' "
                               "experts. Count the other end.")
    if answer == int((busy > 0.5).sum()):
        return Feedback(False, "the threshold is 90%, not a majority.")
    return graduated("09.2", nudge="for each expert, compare the tokens it got from facts with all the tokens it got.",
                     method="route every fact and every held-out sum through the last MoE layer (output.routing[-1]), "
                            "count each expert's tokens from facts and divide by all its tokens; count shares >= 0.9.")


HELD_FIXED_CHOICES = ("total parameters", "active parameters", "training tokens per expert")


def check_held_fixed(answer, *, counts: dict[int, tuple[int, int]]) -> Feedback:
    """Exercise 09.3: which quantity did the comparison hold (nearly) fixed across expert counts?"""
    if not_done(answer):
        return NOT_DONE
    if answer not in HELD_FIXED_CHOICES:
        return Feedback(False, f"answer with one of {list(HELD_FIXED_CHOICES)}.")
    totals, actives = [total for total, _ in counts.values()], [active for _, active in counts.values()]
    if answer == "active parameters":
        return Feedback(True, f"active parameters stay between {min(actives):,} and {max(actives):,} (only the router "
                              f"grows) while the total goes from {min(totals):,} to {max(totals):,}: the paper's "
                              "setting. Next: what would a comparison at equal total parameters need?")
    if answer == "total parameters":
        return Feedback(False, f"look at section 2's table: totals run from {min(totals):,} to {max(totals):,}.")
    return Feedback(False, "with top-1 routing each of n experts sees about 1/n of the tokens: that is what was *not* "
                           "held fixed (section 5).")
