"""Amazon Bedrock Runtime: the Converse API and InvokeModel.

:mod:`.common` holds routing, EventStream frames and errors; :mod:`.converse`
the Converse vocabulary and provider; :mod:`.invoke` InvokeModel and the
vendors' bodies.

Requests go to ``bedrock-runtime.<region>.amazonaws.com`` and are SigV4
signed; they are recognised by path alone so a base URL in front works too:

* ``POST /model/{modelId}/converse`` and ``/converse-stream``: one body shape
  for every model (``messages`` of content blocks ``text`` / ``toolUse`` /
  ``toolResult``, ``system`` blocks, ``toolConfig.tools[].toolSpec``).
* ``POST /model/{modelId}/invoke`` and ``/invoke-with-response-stream``: the
  body is the model vendor's own format. Anthropic models take the Messages
  API body (plus ``anthropic_version``), Amazon Nova takes Converse-style
  messages, other vendors are matched on a digest of the whole body.

The model id sits in the path, URL-encoded when it is an ARN or an inference
profile. Streaming is opt-in by path and arrives as AWS EventStream frames
(``:message-type`` event, ``:event-type``, ``:content-type`` application/json).
Converse streams send messageStart, per block contentBlockStart (tool use
only) / contentBlockDelta / contentBlockStop, messageStop and metadata; invoke
streams send ``chunk`` frames whose payload ``{"bytes": base64}`` wraps one
event of the vendor's own stream. Errors are ``{"message": ...}`` with the
exception name in ``x-amzn-errortype``; an error inside a stream is a frame
with ``:message-type`` exception and ``:exception-type``.
"""

