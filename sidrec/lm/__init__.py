"""Language models: base models (base.py), the one prompt builder (prompts.py), and
supervised fine-tuning (sft.py). `base` and `prompts` do not depend on any trainer, so
RL and serving reuse them."""
