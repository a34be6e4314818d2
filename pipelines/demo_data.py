"""The demo dataset: an EC-SaaS order-management platform, deterministic from a seed.

Shards hold one set of tables per client company (`orders_<client_id>`, `order_items_<client_id>`,
`products_<client_id>`), as in the 3-million-table platform this project is modelled on. The data
carries the dirt real shards have, each piece on purpose:

- shards disagree on time: `shard_01`/`shard_03` store JST wall-clock strings, `shard_02`/
  `shard_04` store UTC (see `SHARD_TIMEZONES`, mirrored in `shards.yaml`);
- `shard_03` stores amounts as text with thousands separators ("1,280");
- a few order rows are stored twice; notes, phones and some emails are NULL; text is Japanese;
- orders carry PII (customer name, email, phone);
- one order per shard has an unparseable `ordered_at` (the kind of row ingestion must quarantine);
- two anomalies are injected for the monitoring layer to find: a traffic spike on the help page
  `/help/delivery-delay` three days before the end, and a GMV drop in category `アウトドア` on the
  last day.

SaaS exports land as CSV files: daily Search-Console page clicks and a CRM contacts export.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import sqlalchemy as sa

from assets.constants import BUSINESS_TIMEZONE

JST = ZoneInfo(BUSINESS_TIMEZONE)
UTC = ZoneInfo("UTC")

SHARD_TIMEZONES = {
    "shard_01": "Asia/Tokyo",
    "shard_02": "UTC",
    "shard_03": "Asia/Tokyo",
    "shard_04": "UTC",
}
AMOUNT_WITH_SEPARATORS_SHARD = "shard_03"

SPIKE_PAGE = "/help/delivery-delay"
SPIKE_DAYS_BEFORE_END = 3
DROP_CATEGORY = "アウトドア"

CATEGORIES = ["食品", "飲料", "家電", "アウトドア", "ファッション", "美容", "日用品", "書籍"]
PRODUCT_WORDS = {
    "食品": ["北海道産じゃがいも", "讃岐うどん", "有機玄米", "明太子"],
    "飲料": ["静岡煎茶", "ドリップコーヒー", "天然水", "甘酒"],
    "家電": ["電気ケトル", "ワイヤレスイヤホン", "加湿器", "電動歯ブラシ"],
    "アウトドア": ["テント", "寝袋", "キャンプチェア", "ランタン"],
    "ファッション": ["ウールコート", "スニーカー", "マフラー", "デニム"],
    "美容": ["化粧水", "日焼け止め", "ハンドクリーム", "シャンプー"],
    "日用品": ["洗濯洗剤", "キッチンペーパー", "歯磨き粉", "ゴミ袋"],
    "書籍": ["料理の本", "ビジネス書", "絵本", "旅行ガイド"],
}
FAMILY_NAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN_NAMES = ["太郎", "花子", "翔太", "陽菜", "大翔", "結衣", "蓮", "美咲", "悠真", "さくら"]
ROMAJI_FAMILY = [
    "sato",
    "suzuki",
    "takahashi",
    "tanaka",
    "ito",
    "watanabe",
    "yamamoto",
    "nakamura",
    "kobayashi",
    "kato",
]
PREFECTURES = ["東京都", "大阪府", "神奈川県", "愛知県", "福岡県", "北海道", "京都府", "沖縄県"]
NOTES = ["置き配希望", "ギフト包装をお願いします", "午前中指定", "のし不要"]
PAGES = [
    "/",
    "/pricing",
    "/features/inventory",
    "/features/orders",
    "/help/getting-started",
    "/help/delivery-delay",
    "/help/returns",
    "/help/api",
    "/blog/year-end-sale",
    "/blog/case-study-kazaneya",
]
LIFECYCLE_STAGES = ["lead", "customer", "customer", "customer", "evangelist"]


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 42
    end_date: dt.date | None = None  # last business day with data; default: yesterday in JST
    days: int = 63
    clients_per_shard: int = 20
    shards: tuple[str, ...] = tuple(SHARD_TIMEZONES)
    customers: int = 3000
    crm_contacts: int = 1500

    @property
    def last_day(self) -> dt.date:
        return self.end_date or (dt.datetime.now(JST).date() - dt.timedelta(days=1))

    @property
    def first_day(self) -> dt.date:
        return self.last_day - dt.timedelta(days=self.days - 1)

    def business_days(self) -> list[dt.date]:
        return [self.first_day + dt.timedelta(days=i) for i in range(self.days)]


def client_ids(config: DemoConfig, shard_index: int) -> list[int]:
    """Client ids are unique across shards: shard_01 holds 101.., shard_02 201.., ..."""
    return [(shard_index + 1) * 100 + i + 1 for i in range(config.clients_per_shard)]


def _fmt(instant: dt.datetime, timezone: str) -> str:
    """How a shard stores an instant: a naive wall-clock string in the shard's own timezone."""
    return instant.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _day_factor(day: dt.date, jp_holidays: holidays.HolidayBase) -> float:
    if day in jp_holidays:
        return 1.25
    return 1.3 if day.weekday() >= 5 else 1.0


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    phone: str | None


def _customers(rng: random.Random, count: int) -> list[Customer]:
    people = []
    for i in range(count):
        f = rng.randrange(len(FAMILY_NAMES))
        g = rng.randrange(len(GIVEN_NAMES))
        phone = None if rng.random() < 0.15 else f"090-{rng.randrange(10000):04d}-{i:04d}"
        email = f"{ROMAJI_FAMILY[f]}.{i:05d}@example.jp"
        people.append(Customer(f"{FAMILY_NAMES[f]} {GIVEN_NAMES[g]}", email, phone))
    return people


def _products(rng: random.Random, client_id: int) -> list[dict]:
    rows = []
    for product_id in range(1, 17):
        category = CATEGORIES[(product_id - 1) % len(CATEGORIES)]
        word = rng.choice(PRODUCT_WORDS[category])
        rows.append(
            {
                "product_id": product_id,
                "product_name": f"{word} {client_id}-{product_id}",
                "category": category,
                "price": rng.choice([480, 980, 1280, 2980, 4980, 12800]),
            }
        )
    return rows


def shard_tables(config: DemoConfig) -> dict[str, dict[str, list[dict]]]:
    """All shard rows: {shard: {physical table: rows}}; rows are dicts of stored values."""
    rng = random.Random(config.seed)
    customers = _customers(rng, config.customers)
    days = config.business_days()
    jp_holidays = holidays.country_holidays("JP", years={d.year for d in days})
    start = dt.datetime.combine(config.first_day, dt.time(0), JST)
    out: dict[str, dict[str, list[dict]]] = {}
    for shard_index, shard in enumerate(config.shards):
        tz = SHARD_TIMEZONES.get(shard, "UTC")
        tables: dict[str, list[dict]] = {}
        bad_date_placed = False
        for client_id in client_ids(config, shard_index):
            products = _products(rng, client_id)
            product_rows = []
            for p in products:
                created = start + dt.timedelta(minutes=rng.randrange(600))
                product_rows.append({**p, "updated_at": _fmt(created, tz)})
            # A price change late in the history gives the products snapshot something to track.
            changed = product_rows[rng.randrange(len(product_rows))]
            changed["price"] = int(changed["price"] * 1.1)
            changed["updated_at"] = _fmt(start + dt.timedelta(days=config.days - 10, hours=11), tz)
            tables[f"products_{client_id}"] = product_rows

            orders: list[dict] = []
            items: list[dict] = []
            client_scale = 0.6 + rng.random() * 0.8
            for day_index, day in enumerate(days):
                trend = 1.0 + 0.002 * day_index
                expected = 3.2 * client_scale * trend * _day_factor(day, jp_holidays)
                for _ in range(_poisson(rng, expected)):
                    order_id = len(orders) + 1
                    ordered = dt.datetime.combine(day, dt.time(0), JST) + dt.timedelta(
                        seconds=rng.randrange(86400)
                    )
                    status = rng.choices(["shipped", "cancelled", "pending"], [90, 4, 6])[0]
                    updated = ordered + dt.timedelta(minutes=rng.randrange(5, 240))
                    customer = customers[rng.randrange(len(customers))]
                    total = 0
                    for item_no in range(1 + _poisson(rng, 0.8)):
                        product = _pick_product(rng, products, day == config.last_day)
                        quantity = 1 + _poisson(rng, 0.4)
                        total += quantity * product["price"]
                        items.append(
                            {
                                "order_item_id": len(items) + 1,
                                "order_id": order_id,
                                "product_id": product["product_id"],
                                "quantity": quantity,
                                "unit_price": product["price"],
                                "updated_at": _fmt(ordered + dt.timedelta(seconds=item_no), tz),
                            }
                        )
                    amount = f"{total:,}" if shard == AMOUNT_WITH_SEPARATORS_SHARD else str(total)
                    orders.append(
                        {
                            "order_id": order_id,
                            "customer_name": customer.name,
                            "customer_email": None if rng.random() < 0.02 else customer.email,
                            "customer_phone": customer.phone,
                            "status": status,
                            "total_amount": amount,
                            "shipping_prefecture": rng.choice(PREFECTURES),
                            "note": rng.choice(NOTES) if rng.random() < 0.2 else None,
                            "ordered_at": _fmt(ordered, tz),
                            "updated_at": _fmt(updated, tz),
                        }
                    )
            if orders and not bad_date_placed:
                # The source application once wrote an impossible date; ingestion must keep it
                # visible (quarantine), not drop it and not let it reach the warehouse.
                orders[len(orders) // 2]["ordered_at"] = "2026-02-30 25:61:00"
                bad_date_placed = True
            for dup in rng.sample(orders, k=max(1, len(orders) // 200)):
                orders.append(dict(dup))
            tables[f"orders_{client_id}"] = orders
            tables[f"order_items_{client_id}"] = items
        out[shard] = tables
    return out


def _pick_product(rng: random.Random, products: Sequence[dict], is_last_day: bool) -> dict:
    product = products[rng.randrange(len(products))]
    if is_last_day and product["category"] == DROP_CATEGORY and rng.random() < 0.85:
        # The injected incident: outdoor goods stop selling on the last day.
        others = [p for p in products if p["category"] != DROP_CATEGORY]
        product = others[rng.randrange(len(others))]
    return product


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: small lambdas only, deterministic with the shared generator."""
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


_DATETIME_COLUMNS = {"ordered_at", "updated_at"}
_INTEGER_COLUMNS = {"order_id", "order_item_id", "product_id", "quantity", "unit_price", "price"}


def _sa_type(column: str, dialect: str) -> sa.types.TypeEngine:
    if column in _DATETIME_COLUMNS:
        # MySQL shards use DATETIME (naive, in the server's timezone); SQLite has only text.
        return sa.DateTime() if dialect == "mysql" else sa.String(32)
    if column in _INTEGER_COLUMNS:
        return sa.BigInteger()
    return sa.String(255) if dialect == "mysql" else sa.Text()


def write_shard(url: str, tables: dict[str, list[dict]]) -> None:
    """Create (replace) the shard's tables at a SQLAlchemy URL and load the rows."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "mysql":
                # An impossible date must survive storage the way it does on old MySQL servers.
                conn.exec_driver_sql("SET SESSION sql_mode = ''")
            metadata = sa.MetaData()
            for name, rows in tables.items():
                columns = list(rows[0]) if rows else ["id"]
                table = sa.Table(
                    name,
                    metadata,
                    *(sa.Column(c, _sa_type(c, engine.dialect.name)) for c in columns),
                )
                table.drop(conn, checkfirst=True)
                table.create(conn)
                if rows:
                    conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def page_clicks(config: DemoConfig) -> dict[dt.date, list[dict]]:
    rng = random.Random(config.seed + 1)
    days = config.business_days()
    jp_holidays = holidays.country_holidays("JP", years={d.year for d in days})
    base = {page: 80 + rng.randrange(400) for page in PAGES}
    spike_day = config.last_day - dt.timedelta(days=SPIKE_DAYS_BEFORE_END)
    out = {}
    for day in days:
        # A B2B help centre: quieter at weekends and on public holidays.
        factor = 0.55 if day.weekday() >= 5 or day in jp_holidays else 1.0
        rows = []
        for page in PAGES:
            clicks = max(0, round(base[page] * factor * rng.gauss(1.0, 0.06)))
            if page == SPIKE_PAGE and day == spike_day:
                clicks *= 6  # a cold wave delays deliveries; customers look for help
            impressions = round(clicks / (0.04 + rng.random() * 0.02))
            rows.append(
                {
                    "date": day.isoformat(),
                    "page": page,
                    "clicks": clicks,
                    "impressions": impressions,
                    "ctr": round(clicks / impressions, 4) if impressions else 0.0,
                    "position": round(3 + rng.random() * 7, 1),
                }
            )
        out[day] = rows
    return out


def crm_contacts(config: DemoConfig) -> list[dict]:
    rng = random.Random(config.seed)  # same generator state as shard_tables: same customers
    customers = _customers(rng, config.customers)
    rng = random.Random(config.seed + 2)
    exported_at = dt.datetime.combine(config.last_day, dt.time(23, 0), JST).astimezone(UTC)
    rows = []
    for n, index in enumerate(sorted(rng.sample(range(len(customers)), config.crm_contacts))):
        customer = customers[index]
        # CRMs keep emails as typed: mixed case and stray spaces must still match orders.
        email = customer.email.upper() if n % 7 == 0 else customer.email
        rows.append(
            {
                "contact_id": f"CRM-{index:06d}",
                "email": f" {email} " if n % 11 == 0 else email,
                "full_name": customer.name,
                "phone": customer.phone or "",
                "company": f"株式会社{rng.choice(['風屋', 'ミナト商事', '青空', '桜堂'])}",
                "lifecycle_stage": rng.choice(LIFECYCLE_STAGES),
                "updated_at": (exported_at - dt.timedelta(hours=n % 500)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            }
        )
    return rows


def _write_csv(path: Path, rows: Iterable[dict]) -> None:
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Atomic rename: the landing sensor must never see a half-written file.
    tmp.replace(path)


def write_landing(config: DemoConfig, landing_dir: Path) -> list[Path]:
    written = []
    for day, rows in page_clicks(config).items():
        path = landing_dir / "search_console" / f"pages_{day.isoformat()}.csv"
        _write_csv(path, rows)
        written.append(path)
    path = landing_dir / "crm" / f"contacts_{config.last_day.isoformat()}.csv"
    _write_csv(path, crm_contacts(config))
    written.append(path)
    return written


def seed(config: DemoConfig, shard_urls: dict[str, str], landing_dir: Path) -> dict[str, int]:
    """Write every shard and the landing files; returns row counts for the summary."""
    counts: dict[str, int] = {}
    for shard, tables in shard_tables(config).items():
        if shard not in shard_urls:
            continue
        write_shard(shard_urls[shard], tables)
        counts[shard] = sum(len(rows) for rows in tables.values())
    counts["landing_files"] = len(write_landing(config, landing_dir))
    return counts
