"""pygame demos that speak the protocol only: viewer/controller, story player, arcade (docs/DEMOS.md)."""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before any demo module imports pygame
