"""A pytest plugin: tests that share an expensive fixture run on one xdist worker.

Under ``--dist loadgroup`` pytest-xdist sends the tests of one ``xdist_group`` to one worker.
Grouped here:

- every test using ``llama_server`` (a session fixture: ``llama_cpp.server`` loading the model,
  1 s and 230 MB a worker), found by its fixture, so a new test joins without a mark;
- the modules that mark themselves (``tests/providers/test_transformers.py``: its module
  fixture loads torch and the model, 20-40 s of CPU a worker on a busy machine).

pytest-xdist 3.8 tells the controller a test's group by appending ``@group`` to the node id
the worker reports, but pytest 9.2 keeps node ids structured and no longer reads the string
xdist rewrites, so every group is silently spread over the workers
(https://github.com/pytest-dev/pytest-xdist/issues/1386, fix proposed in #1388). Until a
release has the fix, this sets the suffix the way pytest 9.2 reads it; where that fails (a
pytest that changed again), the tests run ungrouped: slower, still correct.
"""

from __future__ import annotations

import pytest


# Last: after xdist's own hook, to see whether it managed to add the suffix.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "llama_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("llama_server"))
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            _set_node_id(item, item.nodeid + suffix)


def _set_node_id(item: pytest.Item, nodeid: str) -> None:
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # a pytest before 9.2 reads the string, as xdist writes it
        item._nodeid = nodeid  # type: ignore[attr-defined]
        return
    if isinstance(getattr(item, "_id", None), NodeId):
        # parse() keeps the string as given: the suffix survives, as xdist's scheduler reads it.
        item._id = NodeId.parse(nodeid)
