"""Everything that reads a finished run (`runs.open_run`): KV-cache decoding,
discriminator scoring, sample-and-rank, the responder behind chat, generate
and the HTTP server, and the filter and eval modes.

Imports the layers below; never the train loop.
"""
