"""Scoring frozen representations: kNN, the linear probe, batched embedding, the training-time monitor.

- :mod:`~mmcr.evaluation.embed`: features of plain views and embeddings of K augmented views, in batches.
- :mod:`~mmcr.evaluation.knn`: the weighted kNN classifier and its validation grid.
- :mod:`~mmcr.evaluation.linear_probe`: softmax regression on standardised features, L2 chosen on val.
- :mod:`~mmcr.evaluation.monitor`: the validation monitor that training runs every few epochs.
- :mod:`~mmcr.evaluation.report`: the Markdown report with plots of ``mmcr eval``.

The job that scores a checkpoint (``mmcr eval``) is :mod:`mmcr.evaluate`, one layer up.
"""
