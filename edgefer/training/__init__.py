"""Training, evaluation, checkpoints and distillation (needs torch)."""
