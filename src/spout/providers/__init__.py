"""Provider adapters: one module per wire format; and the protocol a provider implements.

A provider from another package subclasses :class:`Provider` and declares itself in the
``spout.providers`` entry-point group (docs/providers.md, "A provider in a package of its
own"); ``create_llm("its-name")`` then finds it.
"""

from ._base import AsyncSource, Call, NamedToolChoice, OutputShape, Provider, SyncSource

__all__ = ["AsyncSource", "Call", "NamedToolChoice", "OutputShape", "Provider", "SyncSource"]
