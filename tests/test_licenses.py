"""The licence catalogue and checker: sourced facts, and verdicts on cases written from the licence texts."""
import json

import pytest

from course_lib import licenses
from course_lib.licenses import CATALOGUE_PATH, DISCLAIMER, check, model_ids, osaid_classification

REQUIRED_MODELS = [
    "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3.2-Exp",
    "deepseek-ai/DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Pro", "meta-llama/Meta-Llama-3-8B",
    "meta-llama/Llama-3.1-8B", "google/gemma-3-27b-it", "Qwen/Qwen3-30B-A3B", "Qwen/Qwen2.5-72B-Instruct",
    "mistralai/Mixtral-8x7B-v0.1", "mistralai/Mistral-Large-Instruct-2407", "openai/gpt-oss-120b",
    "allenai/OLMo-2-1124-7B", "moonshotai/Kimi-K2-Instruct", "CohereLabs/c4ai-command-r-v01",
]
TERMS = ["commercial_use", "mau_threshold", "redistribution", "modification", "naming", "use_restrictions",
         "outputs_to_train", "military_use", "eu_multimodal_restriction", "patent_grant", "osi_approved", "spdx",
         "hf_license"]


def all_value_dicts(node, path=""):
    """Every dict anywhere in the raw JSON that states a fact (has a 'value'), found independently of the library."""
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
        for key, child in node.items():
            yield from all_value_dicts(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from all_value_dicts(child, f"{path}[{index}]")


def test_every_fact_has_a_source_and_a_confidence_mark():
    raw = json.loads(CATALOGUE_PATH.read_text())
    facts = list(all_value_dicts(raw))
    assert len(facts) > 150  # 11 licences x 13 terms, plus the models
    for path, fact in facts:
        assert fact.get("source", "").startswith("https://"), path
        assert fact.get("confidence") in ("V", "S", "I", "?"), path
    assert licenses.catalogue()["models"]  # and the library's own validation accepts it


def test_catalogue_covers_the_required_models_and_terms():
    assert set(REQUIRED_MODELS) <= set(model_ids())
    for licence_id, terms in licenses.catalogue()["licences"].items():
        assert set(TERMS) <= set(terms), licence_id


def answer(repo_id, **use):
    return check(repo_id, **use).findings[0]


@pytest.mark.parametrize("repo_id, use, expected", [
    # Llama 3 forbids improving other LLMs with outputs (§1.b.v); 3.1 allows it with the "Llama" name prefix (§1.b.i)
    ("meta-llama/Meta-Llama-3-8B", dict(train_on_outputs=True), "no"),
    ("meta-llama/Llama-3.1-8B", dict(train_on_outputs=True), "conditional"),
    # the 700M monthly-active-users clause (§2): strictly greater than
    ("meta-llama/Llama-3.1-8B", dict(commercial_mau=700_000_001), "no"),
    ("meta-llama/Llama-3.1-8B", dict(commercial_mau=700_000_000), "conditional"),
    ("meta-llama/Llama-3.1-8B", dict(publish_finetune_as="CourseBot"), "no"),
    ("meta-llama/Llama-3.1-8B", dict(publish_finetune_as="Llama-CourseBot"), "conditional"),
    ("meta-llama/Meta-Llama-3-8B", dict(publish_finetune_as="Llama-CourseBot"), "no"),  # must begin "Llama 3"
    ("meta-llama/Meta-Llama-3-8B", dict(publish_finetune_as="Llama 3 CourseBot"), "conditional"),
    ("meta-llama/Llama-3.1-8B", dict(military=True), "no"),
    # the EU clause of the 3.2 policy covers multimodal models only
    ("meta-llama/Llama-3.2-11B-Vision-Instruct", dict(eu_multimodal=True), "no"),
    ("meta-llama/Llama-3.1-8B", dict(eu_multimodal=True), "yes"),
    # DeepSeek License Agreement: Attachment A forbids military use; distillation makes a Derivative (§1)
    ("deepseek-ai/DeepSeek-V3", dict(military=True), "no"),
    ("deepseek-ai/DeepSeek-V3", dict(train_on_outputs=True), "conditional"),
    ("deepseek-ai/DeepSeek-V3", dict(commercial_mau=10**9), "conditional"),
    # MIT: no use restriction, no user cap, distillation allowed (R1 README says so explicitly)
    ("deepseek-ai/DeepSeek-R1", dict(train_on_outputs=True), "yes"),
    ("deepseek-ai/DeepSeek-V4-Pro", dict(commercial_mau=10**9), "yes"),
    ("deepseek-ai/DeepSeek-V4-Flash", dict(military=True), "yes"),
    ("deepseek-ai/DeepSeek-V3.2-Exp", dict(redistribute_original=True), "conditional"),  # keep the notice
    # non-commercial licences
    ("mistralai/Mistral-Large-Instruct-2407", dict(commercial_mau=0), "no"),
    ("CohereLabs/c4ai-command-r-v01", dict(commercial_mau=10), "no"),
    # user-count clauses that differ: Qwen asks for a licence above 100M, Kimi asks for a UI credit
    ("Qwen/Qwen2.5-72B-Instruct", dict(commercial_mau=200_000_000), "no"),
    ("Qwen/Qwen3-30B-A3B", dict(commercial_mau=200_000_000), "yes"),
    ("moonshotai/Kimi-K2-Instruct", dict(commercial_mau=150_000_000), "conditional"),
    ("moonshotai/Kimi-K2-Instruct", dict(train_on_outputs=True), "yes"),
    # Gemma: no user cap, but the Prohibited Use Policy; training on outputs makes a Model Derivative
    ("google/gemma-3-27b-it", dict(commercial_mau=10**9), "conditional"),
    ("google/gemma-3-27b-it", dict(train_on_outputs=True), "conditional"),
    # Apache-2.0: modified copies must mark changed files; gpt-oss adds its one-sentence usage policy
    ("mistralai/Mixtral-8x7B-v0.1", dict(redistribute_modified=True), "conditional"),
    ("mistralai/Mixtral-8x7B-v0.1", dict(military=True), "yes"),
    ("openai/gpt-oss-120b", dict(military=True), "conditional"),
])
def test_verdicts_from_the_licence_texts(repo_id, use, expected):
    assert answer(repo_id, **use).answer == expected


def test_verdicts_explain_themselves():
    llama = answer("meta-llama/Llama-3.1-8B", train_on_outputs=True)
    assert any("begins with 'Llama'" in reason for reason in llama.reasons)
    assert llama.citations[0].clause == "§1.b.i" and llama.citations[0].confidence == "V"
    deepseek = answer("deepseek-ai/DeepSeek-V3", train_on_outputs=True)
    assert any("Derivative of the Model" in reason for reason in deepseek.reasons)
    kimi = answer("moonshotai/Kimi-K2-Instruct", commercial_mau=150_000_000)
    assert any("Kimi K2" in reason for reason in kimi.reasons)
    mixtral = answer("mistralai/Mixtral-8x7B-v0.1", redistribute_modified=True)
    assert any("mark the files you changed" in reason for reason in mixtral.reasons)


def test_the_overall_answer_is_the_strictest():
    verdict = check("meta-llama/Llama-3.1-8B", redistribute_original=True, military=True)
    assert [f.answer for f in verdict.findings] == ["conditional", "no"] and verdict.answer == "no"
    assert check("deepseek-ai/DeepSeek-R1", train_on_outputs=True, military=True).answer == "yes"


def test_verdicts_carry_the_disclaimer():
    verdict = check("deepseek-ai/DeepSeek-V3", military=True)
    assert DISCLAIMER in str(verdict) and DISCLAIMER in verdict._repr_markdown_()
    assert "legal advice" in DISCLAIMER


def test_unknown_model_lists_the_valid_ones_and_suggests():
    with pytest.raises(ValueError, match="Did you mean 'deepseek-ai/DeepSeek-V3'") as error:
        check("deepseek-ai/DeepSeek-V3x", military=True)
    assert "meta-llama/Llama-3.1-8B" in str(error.value)


def test_alias_resolves_to_the_canonical_id():
    assert check("CohereForAI/c4ai-command-r-v01", military=True).repo_id == "CohereLabs/c4ai-command-r-v01"


@pytest.mark.parametrize("use, message", [
    (dict(), "Say what you intend"),
    (dict(sell_it=True), "Unknown use 'sell_it'.*commercial_mau"),
    (dict(commercial_mau=-1), "commercial_mau must be"),
    (dict(commercial_mau=True), "commercial_mau must be"),
    (dict(publish_finetune_as=""), "publish_finetune_as must be"),
    (dict(military="yes"), "military must be True"),
])
def test_bad_uses_are_clear_errors(use, message):
    with pytest.raises(ValueError, match=message):
        check("deepseek-ai/DeepSeek-R1", **use)


@pytest.mark.parametrize("repo_id, category", [
    ("allenai/OLMo-2-1124-7B", "open source AI"),
    ("deepseek-ai/DeepSeek-V4-Pro", "open weights"),
    ("openai/gpt-oss-120b", "open weights"),
    ("deepseek-ai/DeepSeek-V3", "weights available, not open source"),
    ("meta-llama/Llama-3.1-8B", "weights available, not open source"),
    ("moonshotai/Kimi-K2-Instruct", "weights available, not open source"),
])
def test_osaid_classification(repo_id, category):
    classification = osaid_classification(repo_id)
    assert classification.category == category and classification.reasons
