"""A day on the meadow: a linear story, one prompt after another.

    longlive check scripting/examples/linear.py
    longlive render scripting/examples/linear.py -o day.mp4
"""


async def story(s):
    await s.show("a red ball rests on the green grass under a sunny sky", seconds=2)
    await s.show("a red ball rolls to the right across the green grass under a sunny sky", seconds=3)
    await s.show("a red ball rolls to the right across the green grass under an orange sunset", seconds=3)
    await s.show("a red ball bounces on the green grass under a starry night sky", seconds=3,
                 transition="blend", blocks=4)
    await s.show("a red ball rests on the snowy field under a starry night sky while it snows", seconds=3,
                 transition="cut")
