"""The impression log: one row per campaign impression, streamed tick by tick to CSV or Parquet.

Both formats have the same columns (LOG_COLUMNS) and rows in the same order. CSV
rounds time_s to the millisecond and prices to 10 significant digits, and writes
clicked and converted as 0/1; Parquet keeps every float64 exactly and the flags as
booleans. Either is written to a temporary file (rtb.atomic: `.NAME.rtbtmp-PID-RANDOM`)
and renamed into place by close(); abort() removes it, so an interrupted run never
leaves a partial log under the requested name, and the next run removes the temporary
file of a killed one. Parquet needs pyarrow (the 'parquet' extra), imported only here.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Protocol

import numpy as np

from rtb.atomic import AtomicFile

LOG_COLUMNS = ("time_s", "user_id", "publisher_id", "slot_id", "campaign_id", "floor_cpm",
               "bid_cpm", "price_cpm", "clicked", "converted")
LOG_HEADER = (",".join(LOG_COLUMNS) + "\n").encode()
PARQUET_SUFFIX = ".parquet"
PARQUET_EXTRA = "pip install 'rtbsim[parquet]'"
# Rows buffered before a Parquet row group is written: they, not the run's length, bound
# the log's memory. `rtb run` on the quickstart peaks at 206 MB RSS without a log and
# about 310 MB with one (31 MB of it pyarrow's import), for one day as for three; about
# 30 MB more at 2**17 rows, 50 MB less at 2**12 for a 7 % larger file. A day of the
# quickstart is 7 row groups.
ROW_GROUP_ROWS = 1 << 16


class ImpressionLog(Protocol):
    """What the exchange writes to, once per tick, and the run closes or aborts."""

    def write(self, time_s: np.ndarray, user: np.ndarray, slot: np.ndarray, campaign: np.ndarray,
              floor_cpm: np.ndarray, bid_cpm: np.ndarray, price_cpm: np.ndarray,
              clicked: np.ndarray, converted: np.ndarray) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def is_parquet(path: str | Path) -> bool:
    """A log path ending in .parquet (any case) is written as Parquet; any other as CSV."""
    return Path(path).suffix.lower() == PARQUET_SUFFIX


def open_impression_log(path: str | Path, labels) -> ImpressionLog:
    """The log for `path`, by its suffix; `labels` (rtb.market.Labels) names slots and campaigns.

    Raises ModuleNotFoundError, naming the extra, for a .parquet path without pyarrow.
    """
    return ParquetLog(path, labels) if is_parquet(path) else CsvLog(path, labels)


class CsvLog:
    """The log as CSV with a header, rows formatted by one f-string.

    Not the csv module: the log's text fields are ids (rtb.spec_base.Id allows only
    letters, digits and _ . : -), so no field ever needs quoting, and on the
    quickstart's 424,059 rows the csv module took about 1.6 s against 0.8 s for the same
    bytes (the floats must be formatted first either way).
    """

    def __init__(self, path: str | Path, labels):
        self._out = AtomicFile(path, buffering=1 << 20)
        self._out.file.write(LOG_HEADER)
        self._slot_label = np.array(labels.slots, dtype=object)  # "publisher,slot"
        self._campaign = np.array(labels.campaigns, dtype=object)

    def write(self, time_s, user, slot, campaign, floor_cpm, bid_cpm, price_cpm, clicked, converted):
        rows = zip(time_s.tolist(), user.tolist(), self._slot_label[slot], self._campaign[campaign],
                   floor_cpm.tolist(), bid_cpm.tolist(), price_cpm.tolist(),
                   clicked.astype(int).tolist(), converted.astype(int).tolist())
        self._out.file.write("".join(
            f"{t:.3f},{u},{sl},{c},{f:.10g},{b:.10g},{p:.10g},{k},{v}\n"
            for t, u, sl, c, f, b, p, k, v in rows).encode())

    def close(self) -> None:
        self._out.commit()

    def abort(self) -> None:
        self._out.abort()


def parquet_schema():
    """The Parquet log's columns and types (pyarrow)."""
    import pyarrow as pa

    return pa.schema([("time_s", pa.float64()), ("user_id", pa.int64()),
                      ("publisher_id", pa.string()), ("slot_id", pa.string()),
                      ("campaign_id", pa.string()), ("floor_cpm", pa.float64()),
                      ("bid_cpm", pa.float64()), ("price_cpm", pa.float64()),
                      ("clicked", pa.bool_()), ("converted", pa.bool_())])


class ParquetLog:
    """The log as Parquet: each tick's rows are buffered and written as a row group
    every ROW_GROUP_ROWS rows, so memory stays flat however long the run."""

    def __init__(self, path: str | Path, labels):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise ModuleNotFoundError(f"a .parquet impression log needs pyarrow: {PARQUET_EXTRA}",
                                      name="pyarrow") from None
        self._pa = pa
        self._schema = parquet_schema()
        publisher, slot_id = zip(*(s.split(",") for s in labels.slots))
        self._publisher = pa.array(publisher, pa.string())
        self._slot_id = pa.array(slot_id, pa.string())
        self._campaign = pa.array(labels.campaigns, pa.string())
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._buffered = 0
        self._out = AtomicFile(path)
        try:
            self._writer = pq.ParquetWriter(self._out.file, self._schema)
        except BaseException:
            self._out.abort()
            raise

    def write(self, time_s, user, slot, campaign, floor_cpm, bid_cpm, price_cpm, clicked, converted):
        # Copies: the exchange may reuse an array (the tick's outcomes) next tick.
        self._chunks.append(tuple(np.array(column) for column in (
            time_s, user, slot, campaign, floor_cpm, bid_cpm, price_cpm, clicked, converted)))
        self._buffered += len(time_s)
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._chunks:
            return
        pa = self._pa
        (time_s, user, slot, campaign, floor_cpm, bid_cpm, price_cpm, clicked,
         converted) = (np.concatenate(column) for column in zip(*self._chunks))
        slot, campaign = pa.array(slot), pa.array(campaign)
        self._writer.write_table(pa.Table.from_arrays([
            pa.array(time_s, pa.float64()), pa.array(user, pa.int64()),
            self._publisher.take(slot), self._slot_id.take(slot), self._campaign.take(campaign),
            pa.array(floor_cpm, pa.float64()), pa.array(bid_cpm, pa.float64()),
            pa.array(price_cpm, pa.float64()), pa.array(clicked, pa.bool_()),
            pa.array(converted, pa.bool_())], schema=self._schema))
        self._chunks, self._buffered = [], 0

    def close(self) -> None:
        try:
            self._flush()
            self._writer.close()  # writes the footer; the file stays open for commit()
        except BaseException:
            self._out.abort()
            raise
        self._out.commit()

    def abort(self) -> None:
        # Close the writer first: left open, it would write its footer to a closed file
        # when collected. Never raises (a full disk fails the footer too): the error
        # that caused the abort is the one to report.
        with suppress(Exception):
            self._writer.close()
        self._out.abort()
