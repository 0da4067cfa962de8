"""Builds the optional C kernels `negaug._native` (NDA transforms that move memory, random_crop's
resampling, the counter-based noise of gaussian_noise, derangements).

`optional=True`: without a C compiler the install still succeeds and negaug uses its pure-torch
fallbacks, which give bit-identical results (only slower). `-ffp-contract=off` keeps the compiler
from fusing multiply-adds, which the bit-identical results depend on. Everything else is in
pyproject.toml. After editing src/negaug/_native.c, rebuild with `pip install -e .`.
"""
import sys

from setuptools import Extension, setup

libraries = ["m", "dl"] if sys.platform.startswith("linux") else []
setup(ext_modules=[Extension("negaug._native", ["src/negaug/_native.c"], libraries=libraries, optional=True,
                             extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"])])
