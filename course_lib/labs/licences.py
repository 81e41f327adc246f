"""The licence checker (notebook 07): pick a model and the intended uses, read the verdict with its sources."""
from __future__ import annotations

import html

import ipywidgets as widgets

from ..licenses import USES, check, model_ids, osaid_classification
from ._view import describe


def licence_checker() -> widgets.VBox:
    """Pick a model, tick the intended uses, read the verdict with its sources (notebook 07)."""
    model = describe(widgets.Dropdown(options=model_ids(), value="deepseek-ai/DeepSeek-V4-Pro", description="model",
                                      layout=widgets.Layout(width="440px")), "the open-weights model whose licence to check")
    commercial = describe(widgets.Checkbox(value=True, description="commercial use, with"),
                          "use in a product or service that earns money")
    mau = describe(widgets.Dropdown(options=[(f"{n:,}", n) for n in (1_000, 100_000, 1_000_000, 100_000_000, 700_000_000,
                                                                      1_000_000_000)],
                                    value=1_000_000, description="monthly active users"),
                   "some licences change their terms above a number of monthly active users")
    uses = {key: describe(widgets.Checkbox(value=False, description=label), USES[key]) for key, label in (
        ("redistribute_original", "share the original weights"), ("redistribute_modified", "share modified weights"),
        ("train_on_outputs", "train another model on its outputs"), ("military", "military use"),
        ("eu_multimodal", "EU company, multimodal model"))}
    publish = describe(widgets.Checkbox(value=False, description="fine-tune and publish as"),
                       "publish a fine-tuned copy under a new name")
    new_name = describe(widgets.Text(value="CourseBot-7B", description="name", continuous_update=False),
                        "the name you would publish the fine-tune under; press Enter")
    output = widgets.HTML()

    def update(_=None):
        mau.disabled, new_name.disabled = not commercial.value, not publish.value  # only when their box is ticked
        use = {key: True for key, box in uses.items() if box.value}
        if commercial.value:
            use["commercial_mau"] = mau.value
        if publish.value:
            use["publish_finetune_as"] = new_name.value or "unnamed"
        if not use:
            output.value = "<p>Tick at least one intended use.</p>"
            return
        classification = osaid_classification(model.value)
        output.value = (check(model.value, **use).to_html()
                        + f"<p>Under the OSI Open Source AI Definition: <b>{classification.category}</b> "
                          f"({html.escape('; '.join(classification.reasons))}).</p>")

    for control in (model, commercial, mau, publish, new_name, *uses.values()):
        control.observe(update, names="value")
    box = widgets.VBox([model, widgets.HBox([commercial, mau]), widgets.HBox([publish, new_name]),
                        widgets.HBox(list(uses.values())[:2]), widgets.HBox(list(uses.values())[2:]), output])
    box.controls = dict(model=model, commercial=commercial, mau=mau, publish=publish, name=new_name, **uses)
    box.output = output
    update()
    return box
