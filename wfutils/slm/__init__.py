"""The fine-tuned arm: LoRA fine-tuning of a small model and batched generation from it."""
