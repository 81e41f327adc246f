"""The live balancing lab (notebook 04): a short training run in a background thread, with Run and Stop."""
from __future__ import annotations

import threading

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..balancing import BalanceConfig
from ..cached_training import training_hooks
from ..model import build_model
from ..train import StopTraining, train
from ._view import describe, figure_view, set_figure


def balancing_lab(corpus, *, model_config, train_config) -> widgets.VBox:
    """Pick a balancing method and its coefficient, press Run: a short live training, with the load histogram
    and MaxVio updating as it trains, a progress bar and a Stop button (notebook 04).

    Training runs in a background thread so that the Stop button (and the rest of the notebook) stay live.
    """
    methods = {"none": None, "aux loss (alpha)": "aux_loss", "z-loss": "z_loss",
               "loss-free bias (rate u)": "bias_update_rate", "sequence-wise loss": "sequence_loss"}
    method = describe(widgets.Dropdown(options=list(methods), value="loss-free bias (rate u)", description="method"),
                      "how training balances the experts' load (notebook 04, sections 3 to 6)")
    coefficient = describe(widgets.FloatLogSlider(value=1e-2, base=10, min=-5, max=0, step=0.5,
                                                  description="coefficient"),
                           "the loss coefficient (alpha) or the bias update rate u; not used by 'none'")
    run = widgets.Button(description="Run", button_style="success")
    stop = widgets.Button(description="Stop", button_style="danger", disabled=True)
    progress = describe(widgets.IntProgress(value=0, min=0, max=train_config.steps, description="step"),
                        f"training step, out of {train_config.steps}")
    status = widgets.HTML()
    plot = figure_view("press Run: the load per expert and MaxVio will appear here as the model trains")
    state = {"stop": False, "thread": None}

    def draw(history, loads):
        figure = Figure(figsize=(10, 3.2))  # not pyplot: this runs in the training thread, and pyplot is not thread-safe
        ax_load, ax_vio = figure.subplots(1, 2)
        for layer, load in enumerate(loads):
            ax_load.bar([e + 0.8 * layer / len(loads) for e in range(len(load))], load, width=0.8 / len(loads),
                        label=f"layer {layer}")
        ax_load.set_xlabel("expert"); ax_load.set_ylabel("assignments (last batch)"); ax_load.legend(fontsize=7)
        ax_vio.plot(history.step, history.extra.get("max_violation_batch", []))
        ax_vio.set_xlabel("step"); ax_vio.set_ylabel("MaxVio (batch)"); ax_vio.set_xlim(0, train_config.steps)
        ax_vio.grid(alpha=0.3)
        figure.tight_layout()
        set_figure(plot, figure)

    def on_step(info):
        progress.value = info.step
        if info.step % 10 == 0 or info.step == train_config.steps:
            draw(info.history, info.history.routing[-1]["load"] if info.history.routing else [])
            status.value = f"step {info.step}: loss {info.loss:.3f}, MaxVio {info.history.extra['max_violation_batch'][-1]:.2f}"
        if state["stop"]:
            raise StopTraining

    def work(balance: BalanceConfig):
        try:
            torch.manual_seed(train_config.seed)
            model = build_model(model_config)
            losses, callbacks = training_hooks(model, train_config, balance)
            history = train(model, corpus, train_config, losses=losses, callbacks=[*callbacks, on_step],
                            progress=False)
            if history.step:  # the last step drawn, also when Stop interrupted between two redraws
                draw(history, history.routing[-1]["load"] if history.routing else [])
            status.value += (f" — stopped at step {len(history.step)}" if state["stop"]
                             else f" — done: validation loss {history.val_loss[-1]:.3f}")
        except Exception as error:  # shown, not lost in a background thread
            status.value += f" — failed: {type(error).__name__}: {error}"
        finally:  # whatever happened, the lab can run again
            run.disabled, stop.disabled, method.disabled = False, True, False
            follow_method()

    def start(_=None):
        key = methods[method.value]  # read the settings here, in the kernel's thread, before training starts
        balance = BalanceConfig(**({key: coefficient.value} if key else {}))
        state["stop"] = False
        run.disabled, stop.disabled, method.disabled, coefficient.disabled = True, False, True, True
        progress.value = 0
        status.value = f"training with {method.value}" + (f" = {coefficient.value:g}" if key else "") + " ..."
        state["thread"] = threading.Thread(target=work, args=(balance,), daemon=True)
        state["thread"].start()

    def halt(_=None):
        state["stop"] = True

    def follow_method(_=None):
        coefficient.disabled = methods[method.value] is None

    run.on_click(start)
    stop.on_click(halt)
    method.observe(follow_method, names="value")
    follow_method()
    box = widgets.VBox([widgets.HBox([method, coefficient]), widgets.HBox([run, stop, progress]), status, plot])
    box.controls = dict(method=method, coefficient=coefficient, run=run, stop=stop)
    box.output, box.status, box.state = plot, status, state
    return box
