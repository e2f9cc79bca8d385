"""Denoiser-Server test suite."""
