"""Scoring predictions, statistics with confidence intervals, the error taxonomy and the paper's claims.

One job per module:

* :mod:`~wfutils.evaluation.loading` -- a run's systems (with their ``SystemMeta``), predictions, examples;
* :mod:`~wfutils.evaluation.costs` -- what a prediction cost (traces, local engines, list prices);
* :mod:`~wfutils.evaluation.scoring` -- :data:`METRICS`, one prediction, a whole run (``evaluate_run``);
* :mod:`~wfutils.evaluation.result` -- the ``Evaluation`` record and the score-table layout;
* :mod:`~wfutils.evaluation.store` -- saving / loading an evaluation, its tables and figures;
* :mod:`~wfutils.evaluation.tables` -- feature, error and cost tables, the Pareto front; tables as the book shows them;
* :mod:`~wfutils.evaluation.selection` -- which systems are compared; the fine-tuned one chosen on validation;
* :mod:`~wfutils.evaluation.statistics` -- bootstrap CIs, paired tests, relative improvement;
* :mod:`~wfutils.evaluation.taxonomy` -- error tags of a generated flow;
* :mod:`~wfutils.evaluation.claims` -- the paper's claims with verdicts; published numbers (``published.json``);
* :mod:`~wfutils.evaluation.companion` -- what the book shows beside the scores: settings of both arms,
  weight provenance, the headline with intervals, published numbers beside the run's.
"""
