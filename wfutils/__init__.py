"""wfutils: the logic behind wfbook (flow schema, FlowSim, data, prompting, fine-tuning, scoring)."""

__version__ = "0.1.0"
