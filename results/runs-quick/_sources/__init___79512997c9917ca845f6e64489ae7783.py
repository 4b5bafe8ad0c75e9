"""Reproducibility suite for loss-aware low-bit weight quantization (BWN, TWN, LAB, LAQ, BLAQ)."""

__version__ = "0.1.0"
