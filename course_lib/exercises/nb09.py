"""Checks for notebook 09's exercises."""
from __future__ import annotations

import math

from . import NOT_DONE, Feedback, graduated, not_done


def check_independent_recall(answer, *, byte_accuracy: float, exact_accuracy: float, records: int,
                             value_bytes: int = 4) -> Feedback:
    """Exercise 09.1: if each value byte were right independently with probability p, a whole record would be p^n.

    The feedback compares that with the measured exact recall and says whether the gap is more than noise: a
    binomial z-score over ``records`` facts."""
    if not_done(answer):
        return NOT_DONE
    truth = byte_accuracy ** value_bytes
    if math.isclose(float(answer), truth, rel_tol=1e-3):
        z = (exact_accuracy - truth) / math.sqrt(truth * (1 - truth) / records)
        if abs(z) <= 3:
            reading = (f"The measured {exact_accuracy:.4f} is within noise of it (z = {z:+.1f} over {records:,} "
                       "facts): no evidence either way.")
        else:
            reading = (f"The measured {exact_accuracy:.4f} is {'above' if z > 0 else 'below'} it by {abs(z):.1f} "
                       "standard errors: the bytes of a fact are not independent. Above can mean a fact is recalled "
                       "whole or not at all, or simply that some facts are better learned than others (uneven "
                       "accuracy alone lifts the mean of p^4 above (mean p)^4).")
        return Feedback(True, f"{truth:.4f}. {reading} Next: the same for the dense model.")
    if math.isclose(float(answer), byte_accuracy * value_bytes, rel_tol=1e-3):
        return Feedback(False, "independent events that must all happen multiply their probabilities; they do not add.")
    if math.isclose(float(answer), byte_accuracy, rel_tol=1e-3):
        return Feedback(False, "that is one byte; a record is right only if all of its value bytes are.")
    return graduated("09.1", answer, nudge="a fact is recalled exactly only when every one of its value bytes is right.",
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
                              "(almost) only on sums. Part of that split may come free: facts are letters, sums are "
                              "digits, and an untrained router may already separate them. Next: compare with "
                              "`task.fact_share_by_expert(build_model(parrots_config(16)))`.")
    if answer == int((busy <= 0.1).sum()):
        return Feedback(False, "that counts the experts that get at most 10% of their tokens from facts: the sums' "
                               "experts. Count the other end.")
    if answer == int((busy > 0.5).sum()):
        return Feedback(False, "the threshold is 90%, not a majority.")
    return graduated("09.2", answer, nudge="for each expert, compare the tokens it got from facts with all the tokens it got.",
                     method="route every fact and every held-out sum through the last MoE layer (output.routing[-1]), "
                            "count each expert's tokens from facts and divide by all its tokens; count shares >= 0.9.")


def check_tokens_per_expert(answer, *, steps: int, rows: int, positions: int, n_experts: int) -> Feedback:
    """Exercise 09.3: how many tokens does one expert of a layer see in training, with top-1 and even routing?"""
    if not_done(answer):
        return NOT_DONE
    dense = steps * rows * positions
    truth = dense / n_experts
    if math.isclose(float(answer), truth, rel_tol=0.01):
        return Feedback(True, f"about {truth:,.0f} tokens per expert, against {dense:,} for the dense FFN: each expert "
                              f"is trained on 1/{n_experts} of the data, which is what equal steps do *not* hold fixed. "
                              "Next: how many steps would give each expert the dense FFN's tokens, and what would that "
                              "cost in compute?")
    if math.isclose(float(answer), dense, rel_tol=0.01):
        return Feedback(False, "that is what the dense FFN sees; with top-1 routing the tokens are shared among the "
                               "experts.")
    if math.isclose(float(answer), steps * rows / n_experts, rel_tol=0.01):
        return Feedback(False, "that counts records; every record has several positions, and each position is a token.")
    return graduated("09.3", answer, nudge="count every token a layer processes in training, then share them out among the "
                                   "experts.",
                     method="steps x records per batch x positions per record, divided by the number of experts.")
