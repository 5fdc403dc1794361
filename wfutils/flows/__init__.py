"""The flow format: vocabulary, JSON Schema, parsing model text, the FlowSim metric, and the caps
(:mod:`wfutils.flows.limits`) that bound what any model output can cost."""
