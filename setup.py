"""Builds the optional C kernels `negaug._native` (memory-moving NDA transforms, counter-based noise).

`optional=True`: without a C compiler the install still succeeds and negaug uses its pure-torch
fallbacks, which give bit-identical results (only slower). Everything else is in pyproject.toml.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("negaug._native", ["src/negaug/_native.c"], extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"], optional=True)])
