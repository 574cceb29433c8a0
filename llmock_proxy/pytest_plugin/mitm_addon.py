"""The replay addon as a ``mitmdump -s`` script for the plugin's proxy transport.

The installed package has no ``addons/`` directory, so the plugin ships its
own three-line script. Never imported by the plugin itself (it imports mitmproxy).
"""

from llmock_proxy.mitm.replay import Replay

addons = [Replay()]
