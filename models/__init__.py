"""Denoiser-Server's networks, their registry, and the plain-Python image pipeline around them.

Nothing in this package imports TorchServe: ``handler.py`` is the only serving-specific file.
"""
from .registry import MODELS, WEIGHTS_DIR, ModelSpec, build_model, load_pretrained, save_weights, weight_paths

__all__ = ["MODELS", "WEIGHTS_DIR", "ModelSpec", "build_model", "load_pretrained", "save_weights", "weight_paths"]
