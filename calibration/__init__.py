"""Calibration of per-kernel costs with torch microbenchmarks (`python -m calibration`).

This package imports torch; the emulator core never imports it.
"""
