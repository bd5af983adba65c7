"""Example plugins: complete, tested, and the starting point for a game's own."""
