"""The claim-bearing notebooks under another CPU's kernels: every assertion must hold there too.

Learners' laptops differ: the same seed gives other numbers on an AMD (AVX2) and an Intel (AVX-512) CPU. On
any x86 machine, ATEN_CPU_CAPABILITY=avx2 (with MKL's and oneDNN's equivalents) makes PyTorch take its AVX2
kernels, an approximation of another CPU. The notebooks run here with those kernels and an empty cache (the
cache key does not know the CPU, so a warm cache would replay this machine's runs), from a copy, so the
committed outputs stay as they are. Notebooks 04, 05, 08, 09 and 11 check their live runs against sweeps committed
on another kernel set.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", ["04_load_balancing.ipynb", "05_moe_vs_dense.ipynb",
                                      "08_deepseek_anatomy.ipynb", "09_memorisation_vs_reasoning.ipynb",
                                      "11_deepseek_v4_in_miniature.ipynb"])
def test_claims_hold_with_avx2_kernels(notebook, tmp_path):
    env = {**os.environ, **AVX2, "COURSE_CACHE": str(tmp_path / "cache"), "COURSE_DEVICE": "cpu"}
    env.pop("COURSE_WORKSHOP", None)
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output-dir",
         str(tmp_path), "--ExecutePreprocessor.timeout=600", str(ROOT / "notebooks" / notebook)],
        env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"{notebook} fails with AVX2 kernels:\n{result.stderr[-3000:]}"
