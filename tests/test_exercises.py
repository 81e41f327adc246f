"""The checks must pass the reference solution, say "not done yet" for None, and name the usual mistakes."""
import math

import pytest
import torch

from course_lib.exercises import nb01, nb02, nb03
from course_lib.routing import Router, RouterConfig
from course_lib.transformer import ModelConfig
from course_lib.model import build_model


def test_not_done_is_reported_not_failed(corpus):
    for feedback in (nb01.check_causal_mask(None), nb01.check_unigram_loss(None, corpus),
                     nb02.check_combinations(None, n_routed=8, top_k=2), nb03.check_capacity(..., tokens=1, n_experts=1, top_k=1, capacity_factor=1.0)):
        assert feedback.passed is None and "not done" in repr(feedback)


def test_causal_mask_hints():
    assert nb01.check_causal_mask(lambda n: torch.ones(n, n, dtype=torch.bool).triu(1)).passed
    assert "diagonal" in nb01.check_causal_mask(lambda n: torch.ones(n, n, dtype=torch.bool).triu(0)).message
    assert "inverted" in nb01.check_causal_mask(lambda n: ~torch.ones(n, n, dtype=torch.bool).triu(1)).message
    assert "past" in nb01.check_causal_mask(lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1)).message
    assert "bool" in nb01.check_causal_mask(lambda n: torch.ones(n, n).triu(1)).message


def test_parameter_count_hints():
    config = ModelConfig(context_length=64, d_model=64, n_layers=2, n_heads=2, ffn_hidden=176)
    truth = 256 * 64 + 64 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 176 + 2 * 64) + 64
    assert nb01.check_parameter_count(truth, config).passed
    assert "tied" in nb01.check_parameter_count(truth + 256 * 64, config).message
    assert "position" in nb01.check_parameter_count(truth - 64 * 64, config).message
    assert "three matrices" in nb01.check_parameter_count(truth - 2 * 64 * 176, config).message


def test_unigram_hints(corpus):
    truth = corpus.unigram_loss()
    assert nb01.check_unigram_loss(truth, corpus).passed
    assert "bits" in nb01.check_unigram_loss(truth / math.log(2), corpus).message
    assert "uniform" in nb01.check_unigram_loss(math.log(256), corpus).message


def test_route_top_k_hints():
    def good(logits, k):
        values, indices = logits.topk(k, dim=-1)
        return indices, values.softmax(-1)

    def not_renormalised(logits, k):
        probs = logits.softmax(-1)
        values, indices = probs.topk(k, dim=-1)
        return indices, values

    assert nb02.check_route_top_k(good).passed
    assert "Renormalise" in nb02.check_route_top_k(not_renormalised).message
    assert "logits" in nb02.check_route_top_k(lambda l, k: l.topk(k, dim=-1)[::-1]).message


def test_moe_params_hints():
    kwargs = dict(d_model=128, n_experts=16, top_k=4, expert_hidden=64, n_shared=2)
    expert, router = 3 * 128 * 64, 128 * 16
    assert nb02.check_moe_params(18 * expert + router, 6 * expert + router, **kwargs).passed
    assert "router" in nb02.check_moe_params(18 * expert, 6 * expert, **kwargs).message
    assert "shared" in nb02.check_moe_params(16 * expert + router, 4 * expert + router, **kwargs).message


def test_combination_hints():
    assert nb02.check_combinations(math.comb(256, 8), n_routed=256, top_k=8).passed
    assert "order" in nb02.check_combinations(math.perm(256, 8), n_routed=256, top_k=8).message
    for wrong in (256 ** 8, 12345):  # a hint nudges; it never names the function that computes the answer
        feedback = nb02.check_combinations(wrong, n_routed=256, top_k=8)
        assert not feedback.passed and "comb" not in feedback.message and "distinct" in feedback.message


def test_capacity_hints():
    kwargs = dict(tokens=4096, n_experts=64, top_k=6, capacity_factor=1.25)
    assert nb03.check_capacity(480, **kwargs).passed
    assert "multiply by k" in nb03.check_capacity(80, **kwargs).message
    assert "round up" in nb03.check_capacity(117, tokens=1000, n_experts=64, top_k=6, capacity_factor=1.25).message


def test_v3_weight_hints():
    def make(normalise, scale):
        def v3(logits, k, scaling):
            values, indices = torch.sigmoid(logits).topk(k, dim=-1)
            values = values / values.sum(-1, keepdim=True) if normalise else values
            return indices, values * (scaling if scale else 1.0)
        return v3

    assert nb03.check_v3_weights(make(True, True)).passed
    assert "scaling factor" in nb03.check_v3_weights(make(True, False)).message
    assert "do not sum to 1" in nb03.check_v3_weights(make(False, True)).message


def test_dropped_fraction_check():
    router = Router(16, 4, 1, RouterConfig(capacity_factor=0.25))
    x = torch.randn(64, 16)
    truth = router(x).dropped_fraction()
    assert nb03.check_dropped_fraction(truth, router=router, layer_input=x).passed
    assert "kept" in nb03.check_dropped_fraction(1 - truth, router=router, layer_input=x).message


def test_nb04_hints():
    from course_lib.exercises import nb04

    def good(probs, indices, n):
        return n * (torch.bincount(indices.flatten(), minlength=n).float() / indices.numel() * probs.mean(0)).sum()

    assert nb04.check_switch_loss(good).passed
    assert "number of experts" in nb04.check_switch_loss(lambda p, i, n: good(p, i, n) / n).message
    assert "T*k" in nb04.check_switch_loss(lambda p, i, n: 2 * good(p, i, n)).message
    assert nb04.check_bias_update(lambda b, l, u: b + u * torch.sign(l.float().mean() - l.float())).passed
    assert "flipped" in nb04.check_bias_update(lambda b, l, u: b - u * torch.sign(l.float().mean() - l.float())).message
    assert "proportional" in nb04.check_bias_update(lambda b, l, u: b + u * (l.float().mean() - l.float())).message
    assert nb04.check_max_violation(2.0, [30, 10, 10, 10, 20, 0, 0, 0]).passed
    assert "subtract the mean" in nb04.check_max_violation(3.0, [30, 10, 10, 10, 20, 0, 0, 0]).message


def test_nb05_hints():
    from course_lib.exercises import nb05

    assert nb05.check_fine_grained_hidden(44, expert_hidden=176, split=4).passed
    assert "smaller" in nb05.check_fine_grained_hidden(704, expert_hidden=176, split=4).message
    kwargs = dict(eval_steps=[10, 20, 30], val_losses=[3.0, 2.5, 2.0], target=2.6, tokens_per_step=100)
    assert nb05.check_tokens_to_reach(2000, **kwargs).passed
    assert "in steps" in nb05.check_tokens_to_reach(20, **kwargs).message
    usage = torch.tensor([[[0.1, 0.5], [0.7, 0.2], [0.2, 0.3]]])
    assert nb05.check_busiest_domain("code", usage_by_domain=usage, domains=("prose", "code", "arithmetic"), layer=0, expert=0).passed
    assert not nb05.check_busiest_domain("prose", usage_by_domain=usage, domains=("prose", "code", "arithmetic"), layer=0, expert=0).passed


def test_nb08_hints():
    from course_lib.anatomy import load_config
    from course_lib.exercises import nb08

    v3 = load_config("deepseek-ai--DeepSeek-V3")
    assert nb08.check_mla_cache(61 * 576 * 2, v3).passed
    assert "2 bytes" in nb08.check_mla_cache(61 * 576, v3).message
    assert "rope key" in nb08.check_mla_cache(61 * 512 * 2, v3).message
    assert nb08.check_routed_share(0.974, v3).passed and "percentage" in nb08.check_routed_share(97.4, v3).message
    assert nb08.check_claim_verdict("unsupported", "unsupported", "x: y").passed
    assert not nb08.check_claim_verdict("supported", "unsupported", "x: y").passed


def test_nb06_hints():
    from course_lib.exercises import nb06

    kwargs = dict(batch=32, d_model=7168, expert_hidden=2048, bytes_per_weight=2)
    assert nb06.check_decode_intensity(32.0, **kwargs).passed
    assert "one token" in nb06.check_decode_intensity(1.0, **kwargs).message
    assert nb06.check_fp4_size(277e9 * 4.25 / 8 / 1e9, parameters=277e9).passed
    assert "scale" in nb06.check_fp4_size(277e9 * 0.5 / 1e9, parameters=277e9).message
    days = 3.29e24 / (148e12 * 0.33 * 2048) / 86400
    assert nb06.check_training_days(days, flops=3.29e24, peak_flops=148e12, utilisation=0.33, gpus=2048).passed
    assert "hours" in nb06.check_training_days(days * 24, flops=3.29e24, peak_flops=148e12, utilisation=0.33, gpus=2048).message


def test_nb07_hints(tmp_path, tiny_config):
    from course_lib.exercises import nb07
    from course_lib.open_weights import export_release

    folder = export_release(build_model(tiny_config), tmp_path / "r", name="tiny")
    weights = folder / "model.safetensors"
    prefix = weights.read_bytes()[:8]
    truth = int.from_bytes(prefix, "little")
    assert nb07.check_header_length(truth, weights).passed
    assert "little-endian" in nb07.check_header_length(int.from_bytes(prefix, "big"), weights).message
    assert "8 length bytes" in nb07.check_header_length(truth + 8, weights).message
    assert "count of tensors" in nb07.check_header_length(12, weights).message
    assert nb07.check_header_length(None, weights).passed is None

    assert nb07.check_outputs_rule({"llama3": "no", "llama3.1": "conditional"}).passed
    assert "swapped" in nb07.check_outputs_rule({"llama3": "conditional", "llama3.1": "no"}).message
    assert "not unconditionally" in nb07.check_outputs_rule({"llama3": "no", "llama3.1": "yes"}).message
    assert "dict" in nb07.check_outputs_rule("no").message

    (folder / "LICENSE").write_text("changed")
    assert nb07.check_tampered_file("LICENSE", folder).passed
    assert "reference" in nb07.check_tampered_file("SHA256SUMS", folder).message
    assert "still matches" in nb07.check_tampered_file("README.md", folder).message
    assert "file name from" in nb07.check_tampered_file("weights.bin", folder).message


def test_every_success_message_says_what_to_try_next():
    import ast
    from pathlib import Path

    import course_lib.exercises as package

    successes = 0
    for path in Path(package.__file__).parent.glob("nb*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Feedback"
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value is True):
                successes += 1
                assert "Next:" in ast.unparse(node.args[1]), f"{path.name}:{node.lineno} does not say what to try next"
    assert successes >= 24  # three exercises for each of the eight notebooks


def test_unrecognised_mistakes_get_a_nudge_then_the_method_never_the_answer():
    from course_lib import exercises
    from course_lib.exercises.nb01 import check_parameter_count
    from course_lib.exercises.nb06 import check_training_days
    from course_lib.transformer import ModelConfig, dense_parameter_formula

    exercises._wrong_tries.clear()
    config = ModelConfig()
    truth = sum(dense_parameter_formula(config).values())
    first, again = (check_parameter_count(12_345, config) for _ in range(2))
    assert not first.passed and "Try another answer" in first.message and "4·d²" not in first.message  # a nudge
    assert again.message == first.message  # re-running the same wrong answer is not another try
    second = check_parameter_count(54_321, config)
    assert not second.passed and second.message.startswith("method:") and "4·d²" in second.message
    for feedback in (first, second):
        assert f"{truth:,}" not in feedback.message and str(truth) not in feedback.message
        assert "off by" not in feedback.message  # a difference would give the answer away
    days = dict(flops=3e24, peak_flops=1e15, utilisation=0.4, gpus=2048)
    hints = [check_training_days(answer, **days).message for answer in (1.0, 2.0)]
    assert "Try another answer" in hints[0] and hints[1].startswith("method:")


def test_feedback_meaning_does_not_rest_on_an_emoji():
    from course_lib.exercises import Feedback

    emoji = "✅❌⏳⚠⛔🟢🔴"  # drawn as colour emoji (or as boxes without an emoji font)
    for passed, word in ((True, "correct"), (False, "not yet"), (None, "not done yet")):
        shown = repr(Feedback(passed, "x"))
        assert word in shown and not any(c in emoji or ord(c) >= 0x1F000 for c in shown)


def test_nb09_checks():
    import torch

    from course_lib.exercises.nb09 import check_fact_experts, check_independent_recall, check_tokens_per_expert

    noise = check_independent_recall(0.5 ** 4, byte_accuracy=0.5, exact_accuracy=0.07, records=2000)
    assert noise.passed and "within noise" in noise.message  # 0.0625 vs 0.07: z about 1.4
    signal = check_independent_recall(0.8 ** 4, byte_accuracy=0.8, exact_accuracy=0.45, records=2000)
    assert signal.passed and "not independent" in signal.message
    assert "multiply" in check_independent_recall(2.0, byte_accuracy=0.5, exact_accuracy=0.2, records=2000).message
    assert check_independent_recall(None, byte_accuracy=0.5, exact_accuracy=0.2, records=2000).passed is None
    share = torch.tensor([1.0, 0.95, 0.2, 0.05, float("nan")])
    assert check_fact_experts(2, fact_share=share).passed
    assert "sums' experts" in check_fact_experts(1, fact_share=share).message  # counted the wrong end
    counts = dict(steps=5000, rows=128, positions=9, n_experts=16)
    assert check_tokens_per_expert(360_000, **counts).passed
    assert "dense FFN" in check_tokens_per_expert(5_760_000, **counts).message
    assert "records" in check_tokens_per_expert(40_000, **counts).message


def test_nb11_checks():
    from course_lib.exercises.nb11 import (check_mla_cache_bytes, check_sinkhorn_step, check_visible_entries,
                                           sinkhorn_step)

    v3 = dict(layers=61, kv_lora_rank=512, rope_dim=64, heads=128, nope_dim=128, v_dim=128)
    assert check_mla_cache_bytes(70_272, **v3).passed
    assert "plain multi-head" in check_mla_cache_bytes(61 * 128 * 320 * 2, **v3).message
    assert "one layer" in check_mla_cache_bytes(1152, **v3).message
    assert "RoPE key" in check_mla_cache_bytes(61 * 512 * 2, **v3).message
    assert check_mla_cache_bytes(None, **v3).passed is None
    assert "stored twice" in check_mla_cache_bytes(140_544, **v3).message
    assert check_visible_entries([5, 5], positions=(39, 44), rate=8).passed
    assert "off by one" in check_visible_entries([4, 5], positions=(39, 44), rate=8).message
    assert "unfinished" in check_visible_entries([5, 6], positions=(39, 44), rate=8).message
    assert "one count per position" in check_visible_entries(5, positions=(39, 44), rate=8).message
    matrix = [[1.0, 3.0], [1.0, 1.0]]
    assert check_sinkhorn_step(sinkhorn_step(matrix).tolist(), matrix=matrix).passed
    assert "rows first" in check_sinkhorn_step([[1 / 3, 0.6], [2 / 3, 0.4]], matrix=matrix).message  # rows, then columns
    assert "half a step" in check_sinkhorn_step([[0.5, 0.75], [0.5, 0.25]], matrix=matrix).message
