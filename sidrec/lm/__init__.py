"""Language models: base models and the one loader (base.py), the one prompt builder
(prompts.py), the SID vocabulary and its token ids (vocab.py), the scaffolding of a
training run (run.py: scratch folder, resume, fingerprint, final save) and supervised
fine-tuning (sft.py). Only sft.py knows SFT: RL and serving build on the other four."""
