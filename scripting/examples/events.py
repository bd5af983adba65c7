"""Rain or shine: a story that waits for game events, with timeouts.

A game sends `jump` and `weather` {"kind": "rain" | "snow" | "clear"} events (live: to the
daemon, which relays them to the story; offline: --answers jump,weather or --answers-file). If the game
stays quiet, the story goes on by itself.
"""

WEATHER = {"rain": "in the rain", "snow": "while it snows", "clear": "under a sunny sky"}


async def story(s):
    await s.show("a yellow triangle rests on the sandy beach under a sunny sky", seconds=2)

    jump = await s.event("jump", timeout=3)
    if jump is not None:
        await s.show("a yellow triangle bounces on the sandy beach under a sunny sky", seconds=2)
    else:
        await s.show("a yellow triangle rolls to the left across the sandy beach under a sunny sky", seconds=2)

    change = await s.event("weather", timeout=3, payloads=[{"kind": "rain"}, {"kind": "snow"}, {"kind": "clear"}])
    kind = change.payload.get("kind", "rain") if change else "rain"
    await s.show(f"a yellow triangle rests on the sandy beach {WEATHER.get(kind, WEATHER['rain'])}", seconds=3)
    await s.show("a yellow triangle rests on the sandy beach under a stormy sky", seconds=2, transition="blend",
                 blocks=3)
