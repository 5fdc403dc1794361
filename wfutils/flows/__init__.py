"""The flow format: vocabulary, JSON Schema, parsing model text, and the FlowSim metric."""
