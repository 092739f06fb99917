"""Privacy and rollup as engine stages, in the sense of ``contracts.Stage``.

Privacy rewrites each event; rollup holds events in time windows and says
which source batches it still holds. Both come after parse
(engine/transforms.py), in the order the command line or the settings give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from named_senderr.engine.contracts import Stage
from named_senderr.errors import ConfigError
from named_senderr.event import Event
from named_senderr.normalize.privacy import PrivacyConfig, compile_privacy
from named_senderr.normalize.rollup import Windows


@dataclass
class Rewrite:
    """A stage that rewrites every event and holds none (privacy)."""

    apply: Callable[[Event], Event]

    def process(self, events: list[Event], seq: int) -> list[Event]:
        return [self.apply(event) for event in events]

    def rollback(self) -> None:
        """It keeps nothing."""

    def flush(self, final: bool) -> list[Event]:
        return []

    def oldest_held(self) -> int | None:
        return None


@dataclass
class Rollup:
    """One event per server x reason x client network x window; windows close as time moves on.

    A source that falls silent would keep its last windows open for ever: they are closed once no event came
    for ``window`` seconds of the clock (``flush``), and all of them at the end.
    """

    window: float
    clock: Callable[[], float]
    _windows: Windows = field(init=False)
    _last_event: float = field(init=False, default=0.0)
    _last_before: float = field(init=False, default=0.0)  # ``_last_event`` before the last ``process``

    def __post_init__(self) -> None:
        self._windows = Windows(self.window)

    def process(self, events: list[Event], seq: int) -> list[Event]:
        done: list[Event] = []
        self._windows.begin()
        self._last_before = self._last_event
        for event in events:
            done.extend(self._windows.add(event, seq))
        if events:
            self._last_event = self.clock()
        return done

    def rollback(self) -> None:
        self._windows.undo()
        self._last_event = self._last_before

    def flush(self, final: bool) -> list[Event]:
        if final or self.clock() - self._last_event >= self.window:
            return self._windows.close()
        return []

    def oldest_held(self) -> int | None:
        return self._windows.oldest_seq()


@dataclass(frozen=True)
class RollupConfig:
    """``[transforms.NAME] type = "rollup"``: the window in seconds (``--rollup`` on the command line)."""

    window: float = 0.0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f'window {self.window:g} s: a rollup needs 1 s or more, e.g. window = "60s"')


TransformConfig = PrivacyConfig | RollupConfig


def stages(transforms: Sequence[TransformConfig], clock: Callable[[], float]) -> list[Stage]:
    """The stages in the order given (``run --config`` follows its ``inputs``); privacy keys are read now."""
    built: list[Stage] = []
    for config in transforms:
        if isinstance(config, RollupConfig):
            built.append(Rollup(config.window, clock))
        elif (privacy := compile_privacy(config)) is not None:
            built.append(Rewrite(privacy))
    return built
