"""Scoring predictions, statistics with confidence intervals, the error taxonomy and the paper's claims."""
