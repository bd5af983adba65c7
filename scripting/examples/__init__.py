"""Example stories for the toy world; each passes `longlive check` and renders (tests)."""
