"""Pretraining: the loop (:func:`pretrain`) and the one definition of its step (:func:`train_step`)."""

from mmcr.training.loop import pretrain
from mmcr.training.step import Schedule, StepOutput, TrainState, build_state, train_step

__all__ = ["Schedule", "StepOutput", "TrainState", "build_state", "pretrain", "train_step"]
