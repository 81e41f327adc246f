"""Licences of real open-weights models as data, and a checker: "may I do this with that model?"

The facts live in ``data/licenses.json``: every fact carries its value, a source URL, the clause where there is
one, and a confidence mark (V verified, S secondary, I interpretation, ? uncertain). This module only reasons
over them. It is educational, not legal advice. Taught in notebook 07.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "data" / "licenses.json"
DISCLAIMER = "Educational, not legal advice: read the licence itself, and ask a lawyer before you rely on this."
CONFIDENCE = ("V", "S", "I", "?")
ANSWERS = ("yes", "conditional", "no")  # in order of strictness
NO_CONDITION = "no condition in the licence for this use"
USES = {
    "commercial_mau": "commercial use in a product or service with this many monthly active users (int)",
    "redistribute_original": "share the original weights (True)",
    "redistribute_modified": "share modified weights, for example quantised or pruned (True)",
    "publish_finetune_as": "fine-tune and publish the result under this new name (str)",
    "train_on_outputs": "use the model's outputs to train another model, i.e. distillation (True)",
    "military": "military use (True)",
    "eu_multimodal": "use a multimodal model as a person or company based in the EU (True)",
}
USE_LABELS = {"commercial_mau": "commercial use", "redistribute_original": "share the original weights",
              "redistribute_modified": "share modified weights", "publish_finetune_as": "publish a fine-tune",
              "train_on_outputs": "train on its outputs", "military": "military use",
              "eu_multimodal": "EU, multimodal model"}
CONFIDENCE_LEGEND = ("source marks: [V] verified in the licence text, [S] from a secondary source, "
                     "[I] our interpretation, [?] uncertain")


@dataclass(frozen=True)
class Citation:
    source: str
    clause: str | None
    confidence: str


@dataclass
class Finding:
    """The answer for one intended use, with the reasons and where they come from."""
    use: str
    answer: str  # "yes" | "conditional" | "no"
    reasons: list[str]
    citations: list[Citation]


@dataclass
class Verdict:
    repo_id: str
    licence: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def answer(self) -> str:
        """The strictest answer over all intended uses."""
        return max((f.answer for f in self.findings), key=ANSWERS.index)

    @property
    def conditions(self) -> list[str]:
        return [reason for f in self.findings if f.answer == "conditional" for reason in f.reasons]

    def __str__(self) -> str:
        lines = [f"{self.repo_id} ({self.licence}): {self.answer.upper()}"]
        for finding in self.findings:
            lines.append(f"  {finding.use}: {finding.answer}")
            lines += [f"    - {reason}" for reason in finding.reasons]
            lines += [f"    [{c.confidence}] {c.clause + ' — ' if c.clause else ''}{c.source}" for c in finding.citations]
        return "\n".join(lines + [DISCLAIMER])

    def to_html(self) -> str:
        """The verdict as an HTML table with links to the sources (the licence widget shows this)."""
        from html import escape

        colour = {"yes": "#1a7f37", "conditional": "#9a6700", "no": "#cf222e"}
        rows = "".join(
            f"<tr><td>{escape(USE_LABELS[f.use])}</td><td style='color:{colour[f.answer]}'><b>{f.answer}</b></td>"
            f"<td>{'<br>'.join(escape(r) for r in f.reasons)}</td><td>"
            + "<br>".join(f"[{c.confidence}] <a href='{escape(c.source)}' target='_blank'>{escape(c.clause or 'source')}</a>"
                          for c in f.citations) + "</td></tr>" for f in self.findings)
        return (f"<p><b>{escape(self.repo_id)}</b> — licence <code>{escape(self.licence)}</code> — overall: "
                f"<b style='color:{colour[self.answer]}'>{self.answer}</b></p><table><tr><th>use</th><th>answer</th>"
                f"<th>why / conditions</th><th>source</th></tr>{rows}</table><p><small>{escape(CONFIDENCE_LEGEND)}"
                f"</small></p><p><i>{escape(DISCLAIMER)}</i></p>")

    def _repr_markdown_(self) -> str:
        mark = {"yes": "✅ yes", "conditional": "⚠️ conditional", "no": "⛔ no"}
        rows = []
        for finding in self.findings:
            sources = "<br>".join(f"[{c.confidence}] [{c.clause or 'source'}]({c.source})" for c in finding.citations)
            rows.append(f"| {finding.use} | {mark[finding.answer]} | {'<br>'.join(finding.reasons)} | {sources} |")
        return (f"**{self.repo_id}** — licence `{self.licence}` — overall: **{mark[self.answer]}**\n\n"
                "| intended use | answer | why / conditions | source |\n|---|---|---|---|\n" + "\n".join(rows)
                + f"\n\n*{DISCLAIMER}*")


@lru_cache(maxsize=1)
def catalogue() -> dict:
    """The catalogue, checked: every fact has a source and a confidence mark, every model a known licence."""
    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    for where, fact in iter_facts(data):
        if not str(fact.get("source", "")).startswith("https://") or fact.get("confidence") not in CONFIDENCE:
            raise ValueError(f"{CATALOGUE_PATH}: fact {where} needs an https source and a confidence in {CONFIDENCE}")
    for repo_id, model in data["models"].items():
        if model["licence"]["value"] not in data["licences"]:
            raise ValueError(f"{CATALOGUE_PATH}: {repo_id} names unknown licence {model['licence']['value']!r}")
    return data


def iter_facts(data: dict):
    """Yield (path, fact) for every sourced fact in the catalogue: the dicts that carry a 'value'."""
    for kind in ("licences", "models"):
        for key, entry in data[kind].items():
            for name, fact in entry.items():
                if isinstance(fact, dict) and "value" in fact:
                    yield f"{kind}.{key}.{name}", fact


def model_ids() -> list[str]:
    return sorted(catalogue()["models"])


def resolve(repo_id: str) -> tuple[str, dict]:
    """(canonical repo id, model entry); an unknown id is an error that lists the known ones."""
    models = catalogue()["models"]
    for canonical, model in models.items():
        if repo_id == canonical or repo_id in model.get("aliases", ()):
            return canonical, model
    close = difflib.get_close_matches(repo_id, list(models), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown model {repo_id!r}.{hint} The catalogue knows: {', '.join(sorted(models))}.")


def licence_terms(repo_id: str) -> tuple[str, dict]:
    """(licence id, its structured terms) for a model."""
    _, model = resolve(repo_id)
    licence_id = model["licence"]["value"]
    return licence_id, catalogue()["licences"][licence_id]


def _cite(fact: dict) -> Citation:
    return Citation(fact["source"], fact.get("clause"), fact["confidence"])


def _finding(use: str, fact: dict, conditions: list[str], *, forbidden: bool = False, note: str | None = None) -> Finding:
    answer = "no" if forbidden else "conditional" if conditions else "yes"
    reasons = ([note] if note else []) + conditions
    return Finding(use, answer, reasons or [NO_CONDITION], [_cite(fact)])


def _judge(use: str, value, terms: dict, model: dict) -> Finding:
    if use == "commercial_mau":
        commercial, cap = terms["commercial_use"], terms["mau_threshold"]
        if commercial["value"] == "no":
            return _finding(use, commercial, [], forbidden=True, note=commercial.get("note", "commercial use is not licensed"))
        if cap["value"] is not None and value > cap["value"]:
            finding = _finding(use, cap, cap["above_conditions"], forbidden=cap["above"] == "no",
                               note=f"{value:,} monthly active users is above the licence's {cap['value']:,}")
            finding.citations.append(_cite(commercial))
            return finding
        return _finding(use, commercial, list(commercial["conditions"]))
    if use in ("redistribute_original", "redistribute_modified", "publish_finetune_as"):
        share, modify, naming = terms["redistribution"], terms["modification"], terms["naming"]
        conditions = list(share["conditions"])
        if use != "redistribute_original":
            conditions += modify["conditions"]
            if terms["use_restrictions"].get("flow_down"):
                conditions.append("your derivative carries the same use restrictions")
        if use == "publish_finetune_as" and naming["value"] and not value.startswith(naming["value"]):
            return Finding(use, "no", [f"the name {value!r} must begin with {naming['value']!r}: {naming['note']}"],
                           [_cite(naming)])
        if use == "publish_finetune_as" and naming["value"]:
            conditions.append(f"the name begins with {naming['value']!r}, as required")
        if use == "publish_finetune_as" and terms["outputs_to_train"]["value"] == "attribution":
            conditions += [c for c in terms["outputs_to_train"]["conditions"] if c not in conditions]
        finding = _finding(use, share, conditions)
        if use != "redistribute_original":
            finding.citations.append(_cite(modify))
        return finding
    if use == "train_on_outputs":
        outputs = terms["outputs_to_train"]
        note = outputs.get("note") if outputs["value"] == "forbidden" else None
        return _finding(use, outputs, list(outputs.get("conditions", [])), forbidden=outputs["value"] == "forbidden",
                        note=note)
    if use == "military":
        military = terms["military_use"]
        if military["value"] == "forbidden":
            return _finding(use, military, [], forbidden=True, note=military.get("clause", "forbidden by the licence"))
        if military["value"] == "not restricted":
            return _finding(use, military, [], note=military.get("note"))
        return _finding(use, military, [military.get("note", military["value"])])
    if use == "eu_multimodal":
        eu = terms["eu_multimodal_restriction"]
        if not eu["value"]:
            return _finding(use, eu, [], note="the licence has no clause about the EU")
        multimodal = model.get("multimodal", {"value": None})
        if multimodal["value"] is False:
            return _finding(use, eu, [], note="the EU clause covers multimodal models only, and this one is not")
        if multimodal["value"] is None:
            return _finding(use, eu, [f"the EU clause applies if this model is multimodal: {eu['note']}"])
        finding = _finding(use, eu, [], forbidden=True, note=eu["note"])
        finding.citations.append(_cite(multimodal))
        return finding
    raise AssertionError(use)  # unreachable: uses are validated in check()


def _validate(use: dict) -> None:
    if not use:
        raise ValueError(f"Say what you intend to do, as keyword arguments: {', '.join(USES)}.")
    unknown = sorted(set(use) - set(USES))
    if unknown:
        raise ValueError(f"Unknown use {', '.join(map(repr, unknown))}. Valid uses: "
                         + "; ".join(f"{key} = {meaning}" for key, meaning in USES.items()))
    mau = use.get("commercial_mau")
    if mau is not None and (isinstance(mau, bool) or not isinstance(mau, int) or mau < 0):
        raise ValueError(f"commercial_mau must be a number of monthly active users (an int >= 0), got {mau!r}")
    name = use.get("publish_finetune_as")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"publish_finetune_as must be the new model's name (a non-empty str), got {name!r}")
    for key in set(use) - {"commercial_mau", "publish_finetune_as"}:
        if use[key] is not True:
            raise ValueError(f"{key} must be True (leave it out if you do not intend it), got {use[key]!r}")


def check(repo_id: str, **use) -> Verdict:
    """May I do this with that model? One Finding per intended use; the Verdict's answer is the strictest.

    Uses (keyword arguments): see ``USES``, e.g. ``check("meta-llama/Llama-3.1-8B", commercial_mau=10**9)``.
    A model's extra policy (gpt-oss's usage policy) adds its condition to every use.
    """
    _validate(use)
    canonical, model = resolve(repo_id)
    licence_id, terms = licence_terms(canonical)
    verdict = Verdict(canonical, licence_id)
    for key, value in use.items():
        finding = _judge(key, value, terms, model)
        if "usage_policy" in model and finding.answer != "no":
            finding.answer = "conditional"
            finding.reasons = [r for r in finding.reasons if r != NO_CONDITION]
            finding.reasons.append(f"the model's usage policy: {model['usage_policy']['value']}")
            finding.citations.append(_cite(model["usage_policy"]))
        verdict.findings.append(finding)
    return verdict


@dataclass
class Classification:
    repo_id: str
    category: str  # "open source AI" | "open weights" | "weights available, not open source"
    reasons: list[str]


def osaid_classification(repo_id: str) -> Classification:
    """Where a release stands under the OSI Open Source AI Definition 1.0, with the reasons (see catalogue['osaid'])."""
    canonical, model = resolve(repo_id)
    licence_id, terms = licence_terms(canonical)
    reasons = []
    if not terms["osi_approved"]["value"]:
        blockers = [terms["commercial_use"]["value"] == "no" and "no commercial use",
                    terms["mau_threshold"]["value"] is not None and "a user-count clause",
                    bool(terms["use_restrictions"]["value"]) and "use restrictions",
                    terms["naming"]["value"] is not None and "a naming duty"]
        reasons.append(f"licence {licence_id!r} is not OSI-approved"
                       + (f" ({', '.join(b for b in blockers if b)})" if any(blockers) else ""))
        return Classification(canonical, "weights available, not open source", reasons)
    reasons.append(f"weights under {terms['spdx']['value']}, an OSI-approved licence")
    data = model.get("training_data_released", {"value": False})
    if data["value"] and "osi_review" in model:
        reasons += ["training data and code published", model["osi_review"]["value"]]
        return Classification(canonical, "open source AI", reasons)
    reasons.append("no data information or complete training code released, which OSAID 1.0 also requires")
    return Classification(canonical, "open weights", reasons)
