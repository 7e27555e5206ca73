"""Quiet Hugging Face: no progress bars or load reports while kgtest loads and saves models.

Both :mod:`kgtest.model` (kgtest's own checkpoints) and :mod:`kgtest.pretrained` (outside
checkpoints) load through :func:`quiet_hf`; it lives here, below both, so neither has to
import the other for it.
"""

from __future__ import annotations

import contextlib

__all__ = ["quiet_hf"]


@contextlib.contextmanager
def quiet_hf():
    """Silence Hugging Face's load/save progress bars and load reports for a block.

    ``from_pretrained`` and ``save_pretrained`` print "Loading weights" / "Writing model
    shards" bars (and a load report) on stderr whatever kgtest's ``progress`` says; inside
    this block they do not, so an error after a model load is still one line.

    Examples
    --------
    >>> from transformers.utils import logging as hf_logging
    >>> with quiet_hf():
    ...     hf_logging.is_progress_bar_enabled()
    False
    """
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    bars, hub_off = hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if not hub_off:
            enable_progress_bars()
