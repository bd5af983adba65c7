"""The built-in models, registered through the plugin hook like any other model plugin.

Each builder imports its model only when called, so listing the models stays cheap.
"""

from __future__ import annotations

from plugins.hookspecs import hookimpl
from runtime.pipeline import ModelRegistry, Pipeline


def _random_small(**kwargs) -> Pipeline:
    from runtime import random_model

    return random_model.build(**kwargs)


def _toy(**kwargs) -> Pipeline:
    from runtime.toy import model

    return model.build(**kwargs)


def _longlive(**kwargs) -> Pipeline:
    from runtime.wan import model

    return model.build(**kwargs)


@hookimpl
def longlive_register_models(registry: ModelRegistry) -> None:
    registry.add("random-small", _random_small)
    registry.add("toy", _toy)
    registry.add("longlive-1.3b", _longlive)
