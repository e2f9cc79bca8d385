"""Evaluation: the served network and its scoring (``served``), the classical baselines and FFDNet, and the
evaluation, overlap, collage, benchmark, load-test and memory reports."""
