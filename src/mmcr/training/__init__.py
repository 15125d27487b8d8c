"""Pretraining: the loop and its step."""

from mmcr.training.pretrain import pretrain

__all__ = ["pretrain"]
