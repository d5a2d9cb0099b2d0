"""Data side of codemix: sources and cleaning, tokenizer, shards and manifests, stage mixtures."""
