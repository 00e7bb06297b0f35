"""The footer: Textual's, on two lines of aligned columns when one line would cut keys off.

Textual's Footer is one grid row with a column per key, and whatever does not fit the
width is off screen. Where the screen is narrow (the ``-narrow`` breakpoint of the main
screen, e.g. 80 columns) this one puts the keys in two rows (app.tcss gives it height 2).
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer


class KeysFooter(Footer):
    """Every shown key stays on screen; ``rows`` is 2 on a narrow screen, else 1."""

    @property
    def rows(self) -> int:
        return 2 if self.screen.has_class("-narrow") else 1

    def compose(self) -> ComposeResult:
        yield from super().compose()  # sets one grid column per key
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def _fit(self) -> None:
        keys = max(1, self.styles.grid_size_columns or 1)
        if self.rows > 1:
            keys = len(self.query("FooterKey")) or keys
        columns = -(-keys // self.rows)
        if self.styles.grid_size_columns != columns:
            self.styles.grid_size_columns = columns
