"""The LongLive daemon: serves a pipeline over the protocol in protocol/SPEC.md.

Entry points: `longlive serve|send|watch|bench-protocol` (cli.py), `Daemon` (daemon.py) and
`serve_in_thread` (inprocess.py). This file imports nothing, so that `python -m
runtime.daemon send` starts without loading torch.
"""
