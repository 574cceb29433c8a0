"""The record addon as a ``mitmdump -s`` script for ``llmock-proxy record``.

The installed package has no ``addons/`` directory (as for the pytest plugin's
``mitm_addon.py``), so it ships this one. Never imported by the command itself.
"""

from llmock_proxy.mitm.record import Record

addons = [Record()]
