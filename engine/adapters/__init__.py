"""Trained low-rank adapters for the analyst role: the file format (file.py), how the analyst runs them
(applied by engine.local), and how they are trained (engine.tuning)."""
