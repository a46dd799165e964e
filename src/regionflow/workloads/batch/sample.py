"""Sample data in the reference format, of any size, with a chosen share of invalid rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ORDER_HEADER = "uuid,Country,Item Type,Sales Channel,Order Priority,Order Date,Region,Ship Date"
FINANCIAL_HEADER = "uuid,unitsSold,unitPrice,unitCost,totalRevenue,totalCost,totalProfit"

_COUNTRIES = {
    "Europe": ["Iceland", "Portugal", "Norway", "Czech Republic", "Greece", "Latvia"],
    "Asia": ["Mongolia", "Vietnam", "Japan", "Sri Lanka", "Laos"],
    "Sub-Saharan Africa": ["Sao Tome and Principe", "Rwanda", "Ghana", "Mali", "Namibia"],
    "Middle East and North Africa": ["Azerbaijan", "Morocco", "Oman", "Libya"],
    "Central America and the Caribbean": ["Panama", "Honduras", "Haiti", "Grenada"],
    "Australia and Oceania": ["Fiji", "Samoa", "Tonga", "Palau"],
    "North America": ["Canada", "Mexico", "Greenland"],
}
_ITEMS = ["Snacks", "Cosmetics", "Fruits", "Personal Care", "Household", "Baby Food", "Clothes",
          "Office Supplies", "Beverages", "Vegetables", "Cereal", "Meat"]
_CHANNELS = ["Online", "Offline"]
_PRIORITIES = ["C", "H", "L", "M"]
INVALID_KINDS = ("field count", "schema", "enrichment: key not found")


@dataclass
class SampleResult:
    orders: Path
    financial: Path
    rows: int
    invalid: int


def _dates(rng: np.random.Generator, n: int) -> tuple[pl.Series, pl.Series]:
    start = np.datetime64("2010-01-01")
    order = start + rng.integers(0, 365 * 7, n).astype("timedelta64[D]")
    ship = order + rng.integers(0, 50, n).astype("timedelta64[D]")

    def fmt(days: np.ndarray) -> pl.Series:
        d = pl.col("d")
        return pl.DataFrame({"d": pl.Series(days.astype("datetime64[D]"))}).select(
            pl.format("{}/{}/{}", d.dt.month(), d.dt.day(), (d.dt.year() % 100).cast(pl.String).str.zfill(2))
        ).to_series()

    return fmt(order), fmt(ship)


def _unique_uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct 9-digit ids in random order."""
    found = np.array([], dtype=np.int64)
    while len(found) < n:
        more = rng.integers(100_000_000, 1_000_000_000, int((n - len(found)) * 1.05) + 16, dtype=np.int64)
        found = pl.Series(np.concatenate([found, more])).unique(maintain_order=True).to_numpy()
    return found[:n]


def generate(rows: int, out_dir: Path, *, invalid_ratio: float = 0.0, seed: int = 1) -> SampleResult:
    """Write out_dir/orders.csv and out_dir/financial_data.csv; invalid rows mix the three reject kinds."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if not 0.0 <= invalid_ratio <= 1.0:
        raise ValueError("invalid ratio must be between 0 and 1")
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    uuids = _unique_uuids(rng, rows)
    regions = list(_COUNTRIES)
    region_idx = rng.integers(0, len(regions), rows)
    countries = [_COUNTRIES[regions[r]] for r in range(len(regions))]
    country_pick = rng.integers(0, 1000, rows)
    order_date, ship_date = _dates(rng, rows)
    df = pl.DataFrame({
        "uuid": pl.Series(uuids).cast(pl.String),
        "country": [countries[r][c % len(countries[r])] for r, c in zip(region_idx, country_pick, strict=True)],
        "item": pl.Series(_ITEMS)[rng.integers(0, len(_ITEMS), rows)],
        "channel": pl.Series(_CHANNELS)[rng.integers(0, 2, rows)],
        "priority": pl.Series(_PRIORITIES)[rng.integers(0, 4, rows)],
        "order_date": order_date,
        "region": pl.Series(regions)[region_idx],
        "ship_date": ship_date,
    })
    units = rng.integers(1, 10_000, rows)
    price = np.round(rng.uniform(5, 700, rows), 2)
    cost = np.round(price * rng.uniform(0.5, 0.9, rows), 2)
    revenue = np.round(units * price, 2)
    total_cost = np.round(units * cost, 2)
    fin = pl.DataFrame({
        "uuid": df["uuid"], "unitsSold": units, "unitPrice": price, "unitCost": cost,
        "totalRevenue": revenue, "totalCost": total_cost, "totalProfit": np.round(revenue - total_cost, 2),
    })

    kinds = np.full(rows, -1, dtype=np.int64)
    n_invalid = int(round(rows * invalid_ratio))
    if n_invalid:
        picked = rng.choice(rows, size=n_invalid, replace=False)
        kinds[picked] = rng.integers(0, 6, n_invalid)
    line = pl.concat_str([pl.col(c) for c in df.columns], separator=",")
    kind = pl.Series("kind", kinds)
    df = df.with_columns(kind)
    lines = df.select(
        pl.when(pl.col("kind") == 0).then(pl.concat_str([pl.col(c) for c in df.columns[:7]], separator=","))
        .when(pl.col("kind") == 1).then(pl.concat_str([line, pl.lit("extra")], separator=","))
        .when(pl.col("kind") == 2).then(pl.concat_str([pl.col("uuid"), pl.lit("0"), pl.col("country"),
                                                       *[pl.col(c) for c in df.columns[2:8]]], separator=","))
        .when(pl.col("kind") == 3).then(pl.concat_str([pl.col(c) for c in df.columns[:4]]
                                                      + [pl.lit("URGENT"), *[pl.col(c) for c in df.columns[5:8]]],
                                                      separator=","))
        .otherwise(line)
        .alias("line")
    ).to_series()
    # kinds 4 and 5: a key absent from the financial data (the row itself is valid)
    missing_keys = (kinds == 4) | (kinds == 5)
    fin = fin.filter(~pl.Series(missing_keys))

    orders = out_dir / "orders.csv"
    with orders.open("w", encoding="utf-8", newline="") as fh:
        fh.write(ORDER_HEADER + "\n")
        if rows:
            fh.write("\n".join(lines.to_list()))
            fh.write("\n")
    financial = out_dir / "financial_data.csv"
    fin.write_csv(financial, line_terminator="\n")
    return SampleResult(orders=orders, financial=financial, rows=rows, invalid=n_invalid)
