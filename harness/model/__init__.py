"""The model runtime: loading a model, batched decoding, log-likelihoods, and measuring what it costs."""
