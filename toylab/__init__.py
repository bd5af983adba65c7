"""The toy model's lab: the procedural world, prompts, the attribute probe, the trainer and the
evaluation. Serving (``runtime/``) never imports this package; ``runtime.toy`` holds only what
``longlive serve`` loads (the model, its vocabulary and text side, the weights)."""
