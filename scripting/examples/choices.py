"""The crossing: choices, variables, a loop and a sub-story, composed from a scene.

The scene says who and where once; every short line below becomes the whole prompt
("the hero rolls to the left" -> "a red ball rolls to the left across a green field under a
sunny daytime sky"). Answer live by typing the option number, or offline with --answers:

    longlive render scripting/examples/choices.py -o crossing.mp4 --answers 1,0
"""

from plugins.composer import Scene

MEADOW = Scene(cast={"hero": "a red ball", "rival": "a blue cube"},
               setting="across a green field", style="under a sunny daytime sky")


async def night_falls(s, hero_rested):
    """A sub-story: the evening, told differently if the hero rested."""
    s.scene(MEADOW.changed(style="under a starry night sky"))
    if hero_rested:
        await s.show("the hero rests", seconds=2)
    else:
        await s.show("the hero bounces", seconds=2)


async def story(s):
    s.scene(MEADOW)
    await s.show("the hero rests", seconds=2)
    way = await s.choose("Which way does the ball roll?", ["left", "right"], timeout=3, default=1)
    await s.show(f"the hero rolls to the {['left', 'right'][way]}", seconds=2)

    laps = 0
    while laps < 2:  # keep rolling until two laps are done, or the player stops
        laps += 1
        go_on = await s.choose(f"Lap {laps}: keep rolling?", ["stop", "keep rolling"], timeout=2, default=1)
        if go_on == 0:
            break
        await s.show(f"the hero rolls to the {['left', 'right'][way]}", seconds=1)

    rested = laps < 2
    if rested:
        await s.show("the hero rests", seconds=1)
    await night_falls(s, rested)
    s.scene(None)
    await s.show("a blue cube rests on the snowy field under a starry night sky", seconds=2, transition="cut")
