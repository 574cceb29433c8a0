"""The WebSocket hooks shared by the addons that keep a transcript per flow."""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from llmock_proxy.record.recorder import WebSocketTranscript


class TranscriptHooks:
    """``websocket_start`` / ``websocket_message`` for an addon that follows
    some flows in ``_recordings`` and keeps their sessions in ``_transcripts``
    (both keyed by flow id); the addon's own ``websocket_end`` decides what a
    finished transcript becomes."""

    _recordings: dict[str, Any]
    _transcripts: dict[str, WebSocketTranscript]

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if flow.id in self._recordings:
            self._transcripts[flow.id] = WebSocketTranscript(started=flow.request.timestamp_start)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        transcript = self._transcripts.get(flow.id)
        if transcript is None or flow.websocket is None:
            return
        message = flow.websocket.messages[-1]
        transcript.add(message.from_client, message.content, is_text=message.is_text, at=message.timestamp)
