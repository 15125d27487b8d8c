"""Analyses of Schaeffer et al. (2024), arXiv 2406.09366, that need no training.

- :mod:`mmcr.analysis.theory`: the pretraining percent error (PPE) of perfectly aligned and
  uniform embeddings, by Monte Carlo and by its Marchenko-Pastur large-size limit; the
  ridge of the PPE at P = D is the "double descent" of the MMCR pretraining loss.
- :mod:`mmcr.analysis.fit`: robust scaling-law fits, L(C) = E + A C^(-alpha) and the
  additive joint form over several variables, with bootstrap confidence intervals,
  hold-out extrapolation error and FLOP accounting.
- :mod:`mmcr.analysis.plots`: figures of the above (matplotlib, Agg backend).
- the ``mmcr theory`` subcommand is :mod:`mmcr.cli.theory`.
"""
