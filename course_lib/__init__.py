"""course_lib: the library behind "Mixture-of-Experts from scratch, the DeepSeek way".

One concept per module. Data flows one way: corpus -> batches -> model -> train -> history -> plots and labs.

- Data: ``data`` (the byte tokenizer, the committed corpus, batches), ``memorisation`` (09: facts to memorise and
  sums to compute, the same interface as the corpus).
- The model, in build order: ``config`` (ModelConfig, MoEConfig), ``routing`` (routers, RouterConfig, Routing),
  ``transformer`` (the parts, ModelOutput with the losses, the dense Transformer), ``moe`` (the MoE layer),
  ``mtp`` (multi-token prediction), ``model`` (``build_model``: the only module that knows which block gets
  which FFN).
- Training: ``train`` (the loop, with loss hooks and callbacks; workshop scaling), ``balancing`` (balance losses,
  the aux-loss-free bias, MaxVio, and the hooks that apply them), ``checkpoints`` (safetensors, atomic),
  ``cached_training`` (train once, cached by config and training code), ``experiments`` (every named run),
  ``seeds`` (runs over seeds as plain data, committed sweeps).
- Analysis and systems: ``specialisation`` (05), ``numerics`` and ``parallel`` (06), ``open_weights`` and
  ``licenses`` (07), ``anatomy`` (08), ``hardware`` (device, dtype and seed policy), ``plots``.
- For the learner: ``labs`` (ipywidgets labs by topic), ``exercises`` (checked exercises, per notebook),
  ``course`` (the course map and running times), ``doctor`` (the classroom pre-flight check, with the expected
  running time on the machine), ``workspace`` (the learner's own working copy, ``my-work/``).
- For maintainers only: ``maintainer`` (corpus builder, generated docs, learner editions).
"""
__version__ = "0.1.0"
