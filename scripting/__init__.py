"""Narrative scripting: stories as plain ``async def story(s)`` in video time (docs/SCRIPTING.md).

``story`` is the API a story sees; ``plan`` and ``render`` run a story offline through the
engine; ``live`` plays it on a daemon through the protocol; ``check`` walks every path;
``cli`` adds ``longlive play``, ``render`` and ``check``.
"""
