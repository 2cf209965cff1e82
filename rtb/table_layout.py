"""The width-fitting layout of the terminal tables: a table is built as a Sheet (key
columns, groups of value columns that stay side by side, blocks of rows), then laid out
when printed for the width it meets: the most precise number formats that fit, then
groups of columns moved to a further block of rows, or the optional ones left out. A
campaign id or a number is never cut."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from rtb.table_format import Formats

WIDE_RUN_TABLE = 150  # columns from which a table shows every figure, in the boxed style
# rich's SIMPLE_HEAD drawn in ASCII: a narrow table that any terminal or file shows.
NARROW_BOX = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


@dataclass(frozen=True)
class Row:
    cells: list[str]  # the key columns', then every group's columns in order
    style: str | None = None
    section: bool = False  # a separating line (blank in the narrow style) after the row


@dataclass(frozen=True)
class Sheet:
    """A table's content before it meets a width: the key columns (shown in every
    block, left-justified), groups of right-justified value columns that stay side by
    side, and the rows, in blocks with an optional title each (e.g. one per campaign)."""

    keys: list[str]
    groups: list[list[str]]
    blocks: list[tuple[str | None, list[Row]]]
    optional: frozenset[int] = frozenset()  # groups left out rather than given a block of their own


def headers_of(groups: list[list[tuple]]) -> list[list[str]]:
    """The headers of groups of (header, ...) column specs."""
    return [[column[0] for column in group] for group in groups]


def _cell_width(text: str) -> int:
    return max((line.cell_len for line in Text.from_markup(text).split("\n")), default=0)


def _columns(sheet: Sheet) -> list[tuple[str, int, str]]:
    """(header, width, justify) per column: every block's columns are equally wide."""
    headers = sheet.keys + [h for group in sheet.groups for h in group]
    rows = [row for _, block in sheet.blocks for row in block]
    return [(h, max([_cell_width(h)] + [_cell_width(r.cells[k]) for r in rows]),
             "left" if k < len(sheet.keys) else "right") for k, h in enumerate(headers)]


def _column_indices(sheet: Sheet, groups: list[int]) -> list[int]:
    starts = [len(sheet.keys)]
    for group in sheet.groups:
        starts.append(starts[-1] + len(group))
    return list(range(len(sheet.keys))) + [k for g in groups for k in range(starts[g], starts[g + 1])]


def _table(sheet: Sheet, groups: list[int], rows: list[Row], narrow: bool,
           title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold",
                  box=NARROW_BOX if narrow else box.HEAVY_HEAD, pad_edge=not narrow,
                  collapse_padding=narrow, show_edge=not narrow)
    columns = _columns(sheet)
    picked = _column_indices(sheet, groups)
    for k in picked:
        header, width, justify = columns[k]
        # fold, never an ellipsis, should a column ever be squeezed; the layout avoids it.
        table.add_column(header, justify=justify, min_width=width, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(row.cells[k] for k in picked), style=row.style, end_section=row.section)
    return table


def _width(sheet: Sheet, groups: list[int], narrow: bool) -> int:
    """The width these groups' table takes, every block's rows in it."""
    rows = [row for _, block in sheet.blocks for row in block]
    console = Console(width=100_000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, _table(sheet, groups, rows, narrow)).maximum


def _pages(sheet: Sheet, width: int | None, narrow: bool) -> tuple[list[list[int]], bool]:
    """The groups each block of rows shows, in order, and whether an optional group
    was left out: groups join the last block while it fits the width."""
    every = list(range(len(sheet.groups)))
    if width is None or _width(sheet, every, narrow) <= width:
        return [every], False
    pages: list[list[int]] = [[]]
    dropped = False
    for g in range(len(sheet.groups)):
        if _width(sheet, pages[-1] + [g], narrow) <= width:
            pages[-1].append(g)
        elif g in sheet.optional:
            dropped = True
        elif pages[-1]:
            pages.append([g])
        else:  # wider than the width alone: the columns fold rather than lose a figure
            pages[-1].append(g)
    return pages, dropped


def _fit(build: Callable[[Formats], Sheet], formats: list[Formats], width: int | None
         ) -> tuple[Sheet, list[list[int]], bool, bool]:
    """The sheet, its pages, whether a group was dropped and whether in the narrow style:
    the first format set and style (boxed first from WIDE_RUN_TABLE columns) that needs
    the fewest blocks and leaves out no more groups than the others."""
    styles = [True] if is_narrow(width) else [False, True]
    best = None
    for narrow in styles:
        for fmt in formats:
            sheet = build(fmt)
            pages, dropped = _pages(sheet, width, narrow)
            if best is None or (len(pages), dropped) < (len(best[1]), best[2]):
                best = (sheet, pages, dropped, narrow)
            if len(pages) == 1 and not dropped:
                return best
    return best


def is_narrow(width: int | None) -> bool:
    return width is not None and width < WIDE_RUN_TABLE


class _Fitted:
    """A table laid out when it is printed, for the width it was given or, without one
    (or when the console is narrower), for the console's: it never meets a width it
    was not laid out for, so rich never has to squeeze it."""

    def __init__(self, layout: Callable[[int | None], RenderableType], width: int | None):
        self.layout, self.width = layout, width

    def __rich_console__(self, console: Console, options):
        width = options.max_width if self.width is None else min(self.width, options.max_width)
        yield self.layout(width)


def fitted_table(build: Callable[[Formats], Sheet], width: int | None, title: str, caption: str,
                 formats: list[Formats], more: str = "", intro: str = "") -> RenderableType:
    """The sheet, laid out for the width when printed (_Fitted, _layout)."""
    return _Fitted(lambda w: _layout(build, w, title, caption, formats, more, intro), width)


def _layout(build: Callable[[Formats], Sheet], width: int | None, title: str, caption: str,
            formats: list[Formats], more: str, intro: str) -> RenderableType:
    """The sheet at this width: the title, a table per block of rows and page of
    columns, and the caption. `more` is added to the caption when optional columns
    were left out (where to find them); `intro` is a paragraph under the title."""
    sheet, pages, dropped, narrow = _fit(build, formats, width)
    if dropped and more:
        caption = f"{caption} {more}"
    tables = [_table(sheet, page, rows, narrow, block_title if k == 0 else None)
              for block_title, rows in sheet.blocks for k, page in enumerate(pages)]
    parts: list[RenderableType] = [Text.from_markup(title, style="bold")]
    if intro:
        parts.append(Text.from_markup(intro))
    for table in tables:
        parts += [Text(), table]
    return Group(*parts, Text(), Text.from_markup(caption))
