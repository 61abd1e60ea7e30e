"""What strategies are built from: the registry and contract, prompts, retrieval, training, fine-tuning."""
