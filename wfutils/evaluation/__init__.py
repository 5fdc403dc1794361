"""Scoring predictions, statistics with confidence intervals, the error taxonomy and the paper's claims.

One job per module:

* :mod:`~wfutils.evaluation.loading` -- a run's systems (with their ``SystemMeta``), predictions, examples;
* :mod:`~wfutils.evaluation.costs` -- what a prediction cost (traces, local engines, list prices);
* :mod:`~wfutils.evaluation.scoring` -- :data:`METRICS`, one prediction, a whole run (``evaluate_run``);
* :mod:`~wfutils.evaluation.result` -- the ``Evaluation`` record and the score-table layout;
* :mod:`~wfutils.evaluation.store` -- saving / loading an evaluation (scoring it when needed), its tables and figures;
* :mod:`~wfutils.evaluation.tables` -- feature, error-rate, implicit-step, cost tables, the Pareto front; tables as
  the book shows them (sizes as ``135M``, means with their CI, split to fit the page, notes as one admonition);
* :mod:`~wfutils.evaluation.figures` -- the evaluation's figures, drawn from those tables;
* :mod:`~wfutils.evaluation.selection` -- which systems are compared, on which examples (``comparison_setup``,
  used by the claims, the headline and the error analysis alike); the fine-tuned one chosen on validation, the
  best prompted one, with one tie rule;
* :mod:`~wfutils.evaluation.statistics` -- bootstrap CIs, paired tests, relative improvement;
* :mod:`~wfutils.evaluation.taxonomy` -- error tags of a generated flow;
* :mod:`~wfutils.evaluation.claims` -- the paper's claims with verdicts (and C5 per oracle pair); published
  numbers (``published.json``);
* :mod:`~wfutils.evaluation.decision` -- fine-tune or prompt: cost and latency per request, the payback volume
  of the fine-tuning's one-off cost, format validity beside quality, data break-even and training-seed spread;
* :mod:`~wfutils.evaluation.companion` -- what the book shows beside the scores: settings of both arms,
  weight provenance, the headline with intervals, published numbers beside the run's.
"""
