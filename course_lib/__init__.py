"""course_lib: the library behind "Mixture-of-Experts from scratch, the DeepSeek way".

One concept per module: ``corpus`` and ``data`` (text and batches), ``transformer`` (the model with a pluggable
FFN), ``train`` (the loop and checkpoints), ``hardware`` (device, dtype and seed policy), ``plots``,
``widgets``, ``exercises`` and ``doctor`` (the classroom pre-flight check).
"""
__version__ = "0.1.0"
