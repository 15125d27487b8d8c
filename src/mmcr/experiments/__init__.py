"""Experiments: many short pretraining runs through one runner, then fits, figures and tables.

- :mod:`mmcr.experiments.runner`: a run's folder, its done marker, the fingerprint check of a
  finished run, training (resumed from a checkpoint), its metrics.
- Sweeps (``mmcr sweep``, ``mmcr report``, ``mmcr fit``): :mod:`~mmcr.experiments.spec` (the
  sweep file and its runs), :mod:`~mmcr.experiments.sweep` (training them, one result line
  each; :mod:`~mmcr.experiments.results`), and the studies
  :mod:`~mmcr.experiments.double_descent` (PPE over batch size P and dimension D, with
  :mod:`~mmcr.experiments.ridge` and :mod:`~mmcr.experiments.double_descent_summary`) and
  :mod:`~mmcr.experiments.scaling` (compute scaling, fitted by
  :mod:`~mmcr.experiments.scaling_fit`).
- The objective comparison (``benchmarks/compare_objectives.py``):
  :mod:`~mmcr.experiments.compare` (lr search on validation kNN, seeds, evaluation), with
  :mod:`~mmcr.experiments.compare_plan`, :mod:`~mmcr.experiments.compare_runs` and
  :mod:`~mmcr.experiments.compare_report`.

Experiments sit above training and evaluation: only the command line and the benchmarks
import them. Submodules are imported on use, so ``import mmcr.experiments`` is cheap.
"""
