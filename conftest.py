"""Wires the robustness-harness pytest plugin (fixtures/plugin.py) into this checkout.

When the package is installed, the ``pytest11`` entry point of the same name loads the
plugin first and this line is a no-op.
"""

pytest_plugins = ["robustness_harness_pytest.plugin"]
