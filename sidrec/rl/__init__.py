"""Reinforcement learning after SFT (GRPO): the trainer set-up (grpo.py), the rewards
(rewards.py) and the catalogue-constrained rollouts on top of `sidrec.decode`
(rollout.py). Empty of imports: a rule's code inputs are the modules it imports."""
