"""A progress bar on stderr for large inputs, only when a person is watching."""

from __future__ import annotations

import sys
from collections.abc import Callable

from named_senderr.sources.log_file import BLOCK_SIZE, InputSource

MIN_SIZE = 32 * 1024 * 1024


def progress_factory() -> Callable[[InputSource], Callable[[], None] | None]:
    """For each input: a per-block callback that advances a bar, or None when not worth it."""

    def for_source(source: InputSource) -> Callable[[], None] | None:
        if not sys.stderr.isatty() or source.is_stdin:
            return None
        size = source.size()
        if size is None or size < MIN_SIZE:
            return None
        from tqdm import tqdm  # imported only when a bar is shown

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=source.name, leave=False, file=sys.stderr)

        def tick() -> None:
            bar.update(BLOCK_SIZE)
            if bar.n >= size:
                bar.close()

        return tick

    return for_source
