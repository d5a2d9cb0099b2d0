"""Export of codemix checkpoints to formats other tools load (Hugging Face transformers)."""
