"""The embedded toy world: procedural scenes, prompts, tokenizer and an attribute probe."""
