"""The corpora: the catalogue, the synthetic generator, the public corpora, and a run's stored data and predictions."""
