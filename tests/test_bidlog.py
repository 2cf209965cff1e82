"""rtb.bidlog: theta and make-ipinyou-data logs parse exactly, and bad lines are named."""

from __future__ import annotations

from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest

from rtb.bidlog import read_bidlog
from rtb.errors import InputError

# The make-ipinyou-data header (mkdata.py: click, weekday, hour, then schema.txt).
LOG_HEADER = ("click weekday hour bidid timestamp logtype ipinyouid useragent IP region city "
              "adexchange domain url urlid slotid slotwidth slotheight slotvisibility slotformat "
              "slotprice creative bidprice payprice keypage advertiser usertag").split()


def write(tmp_path: Path, text: str | bytes, name: str = "log.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def log_row(click: int, payprice: int, bidprice: int = 300, **extra: str) -> list[str]:
    values = {name: f"v{k}" for k, name in enumerate(LOG_HEADER)}
    values.update(click=str(click), payprice=str(payprice), bidprice=str(bidprice),
                  useragent="Mozilla/5.0 (Windows NT 6.1)", usertag="10006,10063", **extra)
    return [values[name] for name in LOG_HEADER] + [values[k] for k in extra if k not in LOG_HEADER]


def error_lines(excinfo: pytest.ExceptionInfo[InputError]) -> list[str]:
    return excinfo.value.lines()


class TestTheta:
    def test_fields_in_order(self, tmp_path: Path) -> None:
        path = write(tmp_path, "0 70 0.0021143609192222357\n1 0 0.5\n0 300 1\n")
        log = read_bidlog(path)
        assert log.click.dtype == np.bool_ and log.click.tolist() == [False, True, False]
        assert log.market_price.dtype == np.int32 and log.market_price.tolist() == [70, 0, 300]
        assert log.pctr.tolist() == [0.0021143609192222357, 0.5, 1.0]
        assert log.skipped == 0 and log.first_skipped == ""

    def test_separators_crlf_blank_lines_and_no_final_newline(self, tmp_path: Path) -> None:
        path = write(tmp_path, "0  5\t0.25\r\n\n  \n1 6 0.125  \r\n0 7 1e-3")
        log = read_bidlog(path)
        assert log.market_price.tolist() == [5, 6, 7]
        assert log.click.tolist() == [False, True, False]
        assert log.pctr.tolist() == [0.25, 0.125, 0.001]

    @pytest.mark.parametrize("fmt", ["%r", "%.17g", "%.18g", "%.20g", "%.25f", "%.6g", "%.3e"])
    def test_pctr_is_the_double_float_gives(self, tmp_path: Path, fmt: str) -> None:
        rng = np.random.default_rng(7)
        values = [float(v) for v in rng.random(20_000) ** 4]
        texts = [fmt % v for v in values]
        path = write(tmp_path, "".join(f"0 1 {t}\n" for t in texts))
        got = read_bidlog(path).pctr
        want = np.array([float(t) for t in texts])
        assert np.array_equal(got.view(np.int64), want.view(np.int64))

    def test_pctr_exact_next_to_rounding_midpoints(self, tmp_path: Path) -> None:
        # Decimal strings at, just above and just below the midpoint of two adjacent
        # doubles: the cases a naive parser rounds the wrong way.
        getcontext().prec = 80
        rng = np.random.default_rng(11)
        texts = []
        for v in rng.random(2_000) ** 3:
            mid = (Decimal(float(v)) + Decimal(float(np.nextafter(v, 1.0)))) / 2
            nudge = Decimal("1e-40")
            texts += [format(mid, "f"), format(mid + nudge, "f"), format(mid - nudge, "f")]
        texts += ["0." + "".join(map(str, rng.integers(0, 10, 18))) for _ in range(2_000)]
        path = write(tmp_path, "".join(f"1 2 {t}\n" for t in texts))
        got = read_bidlog(path).pctr
        want = np.array([float(t) for t in texts])
        assert np.array_equal(got.view(np.int64), want.view(np.int64))

    def test_shared_2997_log_matches_python_parsing(self, ipinyou_dir: Path) -> None:
        path = ipinyou_dir / "2997.test.theta.txt"
        rows = [line.split() for line in path.read_text().splitlines()]
        log = read_bidlog(path)
        assert log.market_price.shape[0] == 156_063
        assert np.array_equal(log.click, [r[0] == "1" for r in rows])
        assert np.array_equal(log.market_price, [int(r[1]) for r in rows])
        want = np.array([float(r[2]) for r in rows])
        assert np.array_equal(log.pctr.view(np.int64), want.view(np.int64))


class TestMalformed:
    @pytest.mark.parametrize(("line", "problem"), [
        ("0 70", "expected 3 fields (click market_price pctr), found 2"),
        ("0 70 0.1 9", "expected 3 fields (click market_price pctr), found 4"),
        ("2 70 0.1", "click must be 0 or 1, got '2'"),
        ("00 70 0.1", "click must be 0 or 1, got '00'"),
        ("0 -5 0.1", "market price must be a non-negative integer of at most 9 digits, got '-5'"),
        ("0 7.5 0.1", "market price must be a non-negative integer of at most 9 digits, got '7.5'"),
        ("0 1234567890 0.1", "market price must be a non-negative integer of at most 9 digits, "
                             "got '1234567890'"),
        ("0 70 abc", "pctr must be a decimal number, got 'abc'"),
        ("0 70 nan", "pctr must be a decimal number, got 'nan'"),
        ("0 70 0.1x", "pctr must be a decimal number, got '0.1x'"),
        ("0 70 1e", "pctr must be a decimal number, got '1e'"),
        ("0 70 1.5", "pctr must be in [0, 1], got '1.5'"),
        ("0 70 -0.1", "pctr must be in [0, 1], got '-0.1'"),
        ("0 70 1e999", "pctr must be in [0, 1], got '1e999'"),
        # more digits than the fast path keeps: checked after float() converts it
        ("0 70 2.0000000000000000000001", "pctr must be in [0, 1], got '2.0000000000000000000001'"),
    ])
    def test_error_names_file_line_and_problem(self, tmp_path: Path, line: str, problem: str) -> None:
        path = write(tmp_path, f"0 1 0.5\n\n{line}\n0 2 0.5\n")
        with pytest.raises(InputError) as excinfo:
            read_bidlog(path)
        assert error_lines(excinfo) == [f"{path}: line 3: {problem}"]

    def test_skip_bad_counts_skips_and_names_the_first(self, tmp_path: Path) -> None:
        text = ("0 1 0.5\n"
                "0 2 2.0000000000000000000001\n"  # found bad only after float(): removed later
                "1 3 0.25\n"
                "0 x 0.5\n"
                "0 4\n"
                "1 5 0.75\n")
        log = read_bidlog(write(tmp_path, text), skip_bad=True)
        assert log.market_price.tolist() == [1, 3, 5]
        assert log.click.tolist() == [False, True, True]
        assert log.pctr.tolist() == [0.5, 0.25, 0.75]
        assert log.skipped == 3
        assert log.first_skipped == "line 2: pctr must be in [0, 1], got '2.0000000000000000000001'"

    def test_the_earliest_problem_is_reported(self, tmp_path: Path) -> None:
        # line 2 is found bad only after float() converts its 22 digits; line 3 by the kernel
        path = write(tmp_path, "0 1 0.5\n0 2 2.0000000000000000000001\n0 x 0.5\n")
        with pytest.raises(InputError, match=r": line 2: pctr must be in \[0, 1\]"):
            read_bidlog(path)

    def test_no_requests_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="no bid requests in the log"):
            read_bidlog(write(tmp_path, "\n\n"))
        with pytest.raises(InputError, match=r"no bid requests in the log \(1 malformed lines skipped\)"):
            read_bidlog(write(tmp_path, "oops\n"), skip_bad=True)

    def test_missing_file_and_unknown_format(self, tmp_path: Path) -> None:
        with pytest.raises(InputError) as excinfo:
            read_bidlog(tmp_path / "absent.txt")
        assert error_lines(excinfo) == [f"{tmp_path / 'absent.txt'}: cannot read: No such file or directory"]
        with pytest.raises(InputError, match="unknown format 'csv'"):
            read_bidlog(write(tmp_path, "0 1 0.5\n"), "csv")


class TestIpinyouLog:
    def write_log(self, tmp_path: Path, rows: list[list[str]], header: list[str] = LOG_HEADER) -> Path:
        text = "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
        return write(tmp_path, text, "test.log.txt")

    def test_payprice_click_and_a_pctr_column(self, tmp_path: Path) -> None:
        header = LOG_HEADER + ["pctr"]
        rows = [log_row(0, 77, 227, pctr="0.0015"), log_row(1, 5, 300, pctr="0.25"),
                log_row(0, 0, 238, pctr="0.125")]
        rows[1][LOG_HEADER.index("url")] = ""  # empty fields are fields
        log = read_bidlog(self.write_log(tmp_path, rows, header), "ipinyou-log")
        assert log.market_price.tolist() == [77, 5, 0]  # payprice, not bidprice or slotprice
        assert log.click.tolist() == [False, True, False]
        assert log.pctr.tolist() == [0.0015, 0.25, 0.125]

    def test_constant_pctr_and_crlf(self, tmp_path: Path) -> None:
        text = ("\t".join(LOG_HEADER) + "\r\n"
                + "".join("\t".join(log_row(c, p)) + "\r\n" for c, p in [(0, 10), (1, 20)]))
        log = read_bidlog(write(tmp_path, text), "ipinyou-log", pctr=0.001)
        assert log.market_price.tolist() == [10, 20]
        assert log.click.tolist() == [False, True]
        assert log.pctr.tolist() == [0.001, 0.001]

    def test_custom_pctr_column(self, tmp_path: Path) -> None:
        header = LOG_HEADER + ["lr_ctr"]
        path = self.write_log(tmp_path, [log_row(0, 9, lr_ctr="0.5")], header)
        assert read_bidlog(path, "ipinyou-log", pctr_column="lr_ctr").pctr.tolist() == [0.5]

    def test_header_problems(self, tmp_path: Path) -> None:
        path = self.write_log(tmp_path, [log_row(0, 9)])
        with pytest.raises(InputError) as excinfo:
            read_bidlog(path, "ipinyou-log")
        assert error_lines(excinfo) == [
            f"{path}: line 1: no 'pctr' column in the header; name the pCTR column with "
            "--pctr-column or give one pCTR for every request with --pctr"]
        no_price = [c for c in LOG_HEADER if c != "payprice"]
        path = self.write_log(tmp_path, [], no_price)
        with pytest.raises(InputError, match="line 1: header has no 'payprice' column"):
            read_bidlog(path, "ipinyou-log", pctr=0.001)

    def test_bad_lines_count_the_header(self, tmp_path: Path) -> None:
        good = log_row(0, 9)
        short = good[:-1]
        bad_price = log_row(0, 9)
        bad_price[LOG_HEADER.index("payprice")] = "null"
        path = self.write_log(tmp_path, [good, short, bad_price, good])
        with pytest.raises(InputError) as excinfo:
            read_bidlog(path, "ipinyou-log", pctr=0.001)
        assert error_lines(excinfo) == [f"{path}: line 3: expected 27 fields, found 26"]
        log = read_bidlog(path, "ipinyou-log", pctr=0.001, skip_bad=True)
        assert log.skipped == 2 and log.market_price.tolist() == [9, 9]
        assert log.first_skipped == "line 3: expected 27 fields, found 26"

    def test_constant_pctr_only_for_the_log_format(self, tmp_path: Path) -> None:
        path = write(tmp_path, "0 1 0.5\n")
        with pytest.raises(InputError, match="--pctr: a constant pCTR applies to --format ipinyou-log only"):
            read_bidlog(path, "ipinyou-theta", pctr=0.1)
        with pytest.raises(InputError, match=r"--pctr: must be in \[0, 1\]"):
            read_bidlog(path, "ipinyou-log", pctr=2.0)
