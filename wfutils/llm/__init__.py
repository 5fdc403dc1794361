"""The prompted arm, one job per module (each imports only the ones above it; flows and data never import llm).

* :mod:`~wfutils.llm.pricing` — prices of hosted models and the cost of a call;
* :mod:`~wfutils.llm.client` — the cached OpenAI-compatible chat client (the openai client's retries), connected
  to an engine's endpoint (:mod:`wfutils.engines`);
* :mod:`~wfutils.llm.config` — :class:`~wfutils.llm.config.PromptConfig` and :class:`~wfutils.llm.config.Decoding`;
* :mod:`~wfutils.llm.retrieval` — BM25 / oracle retrieval of examples and catalogue entries;
* :mod:`~wfutils.llm.strategies` — the strategy registry, prompt templates and messages;
* :mod:`~wfutils.llm.assembly` — decomposed prompting's flow assembly;
* :mod:`~wfutils.llm.generation` — one strategy on one request (the endpoint calls);
* :mod:`~wfutils.llm.systems` — a prompted system's :class:`~wfutils.data.predictions.SystemMeta`;
* :mod:`~wfutils.llm.runner` — one system over splits: concurrency, predictions, traces;
* :mod:`~wfutils.llm.arm` — the whole arm of a run (a ``PromptConfig``), on a local engine or a remote endpoint.
"""
