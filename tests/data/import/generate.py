#!/usr/bin/env python3
"""Generates the sample legacy economy that tests/import.rs imports (docs/import.md).

Deterministic (fixed seed, fixed clock): running it again writes the same files.
Python 3 standard library only.

    python3 tests/data/import/generate.py [--users N] [--out DIR]

It models the legacy tables of docs/import.md, "Mapping the legacy tables": balances
(`account_asset_balances`, stackable materials of `user_inventory` summed per user),
item instances in every status, redemption orders pending (code in plaintext or as
its SHA-256) and fulfilled, and the legacy system's own totals.
"""

import argparse
import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

SEED = 27
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAR = datetime(2036, 1, 1, tzinfo=timezone.utc)
STAFF = 9000

ASSETS = [
    {"code": "POINTS", "display_name": "Points", "kind": "currency"},
    {"code": "DIAMONDS", "display_name": "Diamonds", "kind": "currency"},
    {"code": "red_shard", "display_name": "Red shard", "kind": "fragment", "metadata": {"legacy_name": "red shard"}},
    {"code": "red_crystal", "display_name": "Red crystal", "kind": "material"},
]
TEMPLATES = [
    {"code": "voucher", "display_name": "10% voucher", "kind": "voucher", "default_validity_seconds": 2592000, "redeemable": True},
    {"code": "prize_phone", "display_name": "Phone prize", "kind": "product", "redeemable": True},
    {"code": "badge", "display_name": "Founder badge", "kind": "card"},
    {"code": "potion", "display_name": "Potion", "kind": "other", "consumable": True},
]


def instant(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def code(rng, taken):
    while True:
        value = "".join(rng.choice(ALPHABET) for _ in range(12))
        if value not in taken:
            taken.add(value)
            return f"{value[:4]}-{value[4:8]}-{value[8:]}"


def write(out, name, rows):
    with open(os.path.join(out, name), "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def balances(rng, users):
    rows = []
    for user in range(1, users + 1):
        for asset, chance, high in (("POINTS", 0.9, 50000), ("DIAMONDS", 0.3, 500), ("red_shard", 0.25, 40), ("red_crystal", 0.1, 5)):
            if rng.random() < chance:
                rows.append({"external_id": f"aab-{user}-{asset}", "user_id": user, "asset_code": asset, "amount": rng.randint(0, high)})
    return rows


def items_and_orders(rng, users):
    items, orders, taken = [], [], set()
    serial = 0
    for user in range(1, users + 1):
        for _ in range(rng.choice((0, 1, 1, 2))):
            serial += 1
            template = rng.choice(TEMPLATES)["code"]
            granted = NOW - timedelta(days=rng.randint(1, 700), seconds=rng.randint(0, 86399))
            status = rng.choice(("available", "available", "used", "expired", "revoked"))
            redeemable = template in ("voucher", "prize_phone")
            if redeemable and rng.random() < 0.35:
                status = "locked_for_redemption" if rng.random() < 0.6 else "used"
            expires = None
            if status == "expired":
                expires = granted + timedelta(days=30)
            elif template == "voucher":
                expires = FAR
            item = {
                "external_id": f"ii-{serial}",
                "template_code": template,
                "owner_user_id": user,
                "status": status,
                "metadata": {"serial": f"S{serial:06d}"} if template == "prize_phone" else {},
                "expires_at": instant(expires) if expires else None,
                "granted_at": instant(granted),
            }
            items.append(item)
            if redeemable and status in ("locked_for_redemption", "used") and (status != "used" or rng.random() < 0.7):
                orders.append(order(rng, taken, item, granted, len(orders) + 1))
    return items, orders


def order(rng, taken, item, granted, number):
    plaintext = code(rng, taken)
    created = granted + timedelta(hours=rng.randint(1, 48))
    row = {
        "external_id": f"ro-{number}",
        "item_external_id": item["external_id"],
        "owner_user_id": item["owner_user_id"],
        "status": "pending" if item["status"] == "locked_for_redemption" else "fulfilled",
        "created_at": instant(created),
        "expires_at": instant(FAR if item["status"] == "locked_for_redemption" else created + timedelta(days=30)),
    }
    if rng.random() < 0.5:
        row["code"] = plaintext
    else:
        row["code_sha256"] = hashlib.sha256(plaintext.replace("-", "").encode()).hexdigest()
    if row["status"] == "fulfilled":
        row["fulfilled_at"] = instant(created + timedelta(days=1))
        row["redeemer_user_id"] = STAFF
    return row


def totals(balance_rows, items, orders):
    per_asset = defaultdict(int)
    for row in balance_rows:
        per_asset[row["asset_code"]] += row["amount"]
    rows = [{"kind": "balance", "asset_code": asset, "total": total} for asset, total in sorted(per_asset.items())]
    for (template, status), count in sorted(Counter((i["template_code"], i["status"]) for i in items).items()):
        rows.append({"kind": "items", "template_code": template, "status": status, "count": count})
    for status, count in sorted(Counter(o["status"] for o in orders).items()):
        rows.append({"kind": "orders", "status": status, "count": count})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2500)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample"))
    args = parser.parse_args()
    rng = random.Random(SEED)
    os.makedirs(args.out, exist_ok=True)
    balance_rows = balances(rng, args.users)
    items, orders = items_and_orders(rng, args.users)
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as file:
        json.dump({"format": "economy-import", "version": 1, "source": f"generate.py --users {args.users}"}, file)
        file.write("\n")
    write(args.out, "assets.jsonl", ASSETS)
    write(args.out, "item_templates.jsonl", TEMPLATES)
    write(args.out, "balances.jsonl", balance_rows)
    write(args.out, "items.jsonl", items)
    write(args.out, "orders.jsonl", orders)
    write(args.out, "totals.jsonl", totals(balance_rows, items, orders))


if __name__ == "__main__":
    main()
