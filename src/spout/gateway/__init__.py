"""``spout serve``: a gateway that re-streams any spout provider in the wire protocols
clients already speak (OpenAI chat completions and Responses, Anthropic messages, a
WebSocket of spout's own events), with resumable, shared and cancellable streams.

Needs the ``gateway`` extra (``pip install 'spout[gateway]'``); ``--redis`` needs ``redis``.

Example::

    from spout.gateway import GatewayConfig, Route, create_app

    config = GatewayConfig(routes={"smol": Route("smol", provider="local")}, default="smol")
    app = create_app(config)   # any ASGI server runs it; `spout serve` uses uvicorn
"""

from __future__ import annotations

from ._app import Gateway, create_app
from ._config import GatewayConfig, Limits, Route, load_config
from ._spout_wire import event_from_dict, event_to_dict

__all__ = [
    "Gateway",
    "GatewayConfig",
    "Limits",
    "Route",
    "create_app",
    "event_from_dict",
    "event_to_dict",
    "load_config",
]
