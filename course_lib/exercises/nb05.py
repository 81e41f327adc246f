"""Checks for notebook 05's exercises."""
from __future__ import annotations

from . import NOT_DONE, Feedback, graduated, not_done


def check_fine_grained_hidden(answer, *, expert_hidden: int, split: int) -> Feedback:
    """Exercise 05.1: the hidden width of each fine-grained expert that keeps active compute equal."""
    if not_done(answer):
        return NOT_DONE
    truth = expert_hidden // split
    if answer == truth:
        return Feedback(True, f"{split}x the experts, {split}x top-k, each {truth} wide: same active FLOPs and parameters. "
                              "Next: how many expert combinations does each layout allow?")
    if answer == expert_hidden * split:
        return Feedback(False, "fine-grained experts are *smaller*: divide the hidden width by the split factor.")
    if answer == expert_hidden:
        return Feedback(False, "with the same width and m times as many active experts, compute would grow m-fold.")
    return graduated("05.1", answer, nudge="what stays fixed is the active compute per token: how does it depend on top_k and "
                                   "the expert width?",
                     method=f"active compute is top_k x expert_hidden; multiplying top_k by {split} needs the width "
                            f"divided by {split}.")


def tokens_to_reach(eval_steps: list[int], val_losses: list[float], target: float, tokens_per_step: int) -> int | None:
    """Training tokens at the first evaluation whose loss is at or below ``target`` (None if never)."""
    for step, loss in zip(eval_steps, val_losses):
        if loss <= target:
            return step * tokens_per_step
    return None


def check_tokens_to_reach(answer, *, eval_steps, val_losses, target, tokens_per_step) -> Feedback:
    """Exercise 05.2: read a validation curve."""
    if not_done(answer):
        return NOT_DONE
    truth = tokens_to_reach(eval_steps, val_losses, target, tokens_per_step)
    if answer == truth:
        return Feedback(True, "the first evaluation at or below the target, in tokens (steps x batch x sequence length). "
                              "Next: the same for the fine-grained MoE, and the ratio to dense.")
    if truth is not None and answer == truth // tokens_per_step:
        return Feedback(False, "that is in steps; multiply by the tokens per step (batch_size x seq_len).")
    return graduated("05.2", answer, nudge="find the first evaluation at which the MoE is as good as the dense model's end "
                                   "point, and express it in tokens.",
                     method="walk the evaluations in order and stop at the first loss <= target; report step x tokens "
                            "per step.")


def check_busiest_domain(answer, *, usage_by_domain, domains, layer: int, expert: int) -> Feedback:
    """Exercise 05.3: which domain uses a given expert most (from the usage heat map)?"""
    if not_done(answer):
        return NOT_DONE
    shares = usage_by_domain[layer, :, expert]
    truth = domains[int(shares.argmax())]
    if answer == truth:
        return Feedback(True, f"{truth} sends {float(shares.max()):.1%} of its assignments to expert {expert}, "
                              f"the least-using domain {float(shares.min()):.1%}. Rows of the heat map are domains. "
                              "Next: does the same expert lead in layer 0?")
    if answer not in domains:
        return Feedback(False, f"answer with one of {list(domains)}.")
    return graduated("05.3", answer, nudge="the usage heat maps have one row per domain and one column per expert.",
                     method=f"look at column {expert} of layer {layer}'s domain heat map "
                            f"(usage['domain'][{layer}, :, {expert}]): which row is largest?")
