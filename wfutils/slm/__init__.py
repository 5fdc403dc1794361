"""The fine-tuned arm: prompt formatting (:mod:`~wfutils.slm.formatting`), LoRA fine-tuning through TRL's
``SFTTrainer`` (:mod:`~wfutils.slm.training`), batched generation into predictions files
(:mod:`~wfutils.slm.generation`), and the command line ``python -m wfutils.slm`` (:mod:`~wfutils.slm.__main__`)."""
