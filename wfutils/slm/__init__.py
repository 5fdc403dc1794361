"""The fine-tuned arm: prompt formatting (:mod:`~wfutils.slm.formatting`), LoRA fine-tuning through TRL's
``SFTTrainer`` (:mod:`~wfutils.slm.training`), batched generation into predictions files
through the in-process engine (:mod:`~wfutils.slm.generation`, with :class:`~wfutils.slm.generation.GenerationConfig`),
the training figure (:mod:`~wfutils.slm.figures`), and the command line ``python -m wfutils.slm`` (:mod:`~wfutils.slm.__main__`)."""
