"""Both directions with EleutherAI's lm-evaluation-harness: export tasks, answer its requests, forgetting."""
