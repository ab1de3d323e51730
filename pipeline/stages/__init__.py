"""One module per command: each owns its work, its output files and their lineage records.

demo, ingest, text, media (audio and visual), align, exchange (export and import), train,
evaluate, predict. ``pipeline.cli`` only parses arguments and calls a stage's ``run``.
"""
