"""One error path: problems a user must fix print as ``error: <file>: <problem>`` and exit 2.

``PipelineError`` is the base of the pipeline's own errors. The libraries below the pipeline
may not import it (extractors/ and model/ import neither pipeline/ nor each other), so each
has one base of its own; ``USER_ERRORS`` is the one place that names all three.
"""
from __future__ import annotations

import json
import os
import reprlib
import time

from extractors.base import ExtractorError
from model.errors import ModelError


class PipelineError(ValueError):
    """A problem with the user's input or settings, naming the file (and line or key)."""


class ParamsError(PipelineError):
    """A params section with a key no stage reads, or a value of the wrong kind."""


USER_ERRORS = (PipelineError, ExtractorError, ModelError)

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 12
_SHORT.maxlevel = 3


MAX_LINE = 2000


def error_line(exc) -> str:
    """An error as the one line printed: a message quoting a huge value (a CSV cell, a path) is cut
    in the middle, so the line still names the file and the problem."""
    text = str(exc)
    return text if len(text) <= MAX_LINE else f"{text[:MAX_LINE - 500]} ... {text[-400:]}"


def shown(value) -> str:
    """``repr(value)`` for an error message, shortened: a value a user wrote may be huge (a YAML
    alias bomb printed a 72 MB line), and the line only needs to say which it is."""
    return _SHORT.repr(value)


def tell_torchrun(line: str) -> None:
    """Under torchrun, the error line in this rank's error file: torchrun's closing summary shows
    it for the rank (else only a link to its docs). The file's format is torch.distributed.elastic's.
    Then, where no process group exists yet, wait for the other ranks (``_wait_for_other_ranks``)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as handle:
            json.dump({"message": line, "timestamp": int(time.time())}, handle)
    except OSError:   # the summary then shows torchrun's own text; the line was printed already
        pass
    _wait_for_other_ranks()


PEERS_WAIT_S = 10.0


def _wait_for_other_ranks() -> None:
    """A rank that stops before any process group exists (a bad store, bad params: every rank
    finds the same) waits, up to ``PEERS_WAIT_S``, until every rank has stopped too: torchrun
    kills the others when the first process ends, and a rank killed before it printed its line
    says nothing. The count lives in torchrun's own store (the one ``init_process_group`` would
    join); after a group exists, ``model.train.together`` has done this with a barrier."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or "MASTER_ADDR" not in os.environ:
        return
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return
    try:
        from datetime import timedelta

        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                              timeout=timedelta(seconds=PEERS_WAIT_S))
        key = f"pipeline/stopped/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        store.add(key, 1)
        deadline = time.monotonic() + PEERS_WAIT_S
        while store.add(key, 0) < world and time.monotonic() < deadline:
            time.sleep(0.05)
    except (RuntimeError, OSError, ValueError):   # no store to reach: leave as before
        pass
