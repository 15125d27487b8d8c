"""Pretraining: the loop, optimisers and learning-rate schedules, checkpoints."""
