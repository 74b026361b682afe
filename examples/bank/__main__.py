"""``python -m examples.bank``: a scripted day at the bank, printed with its audit trail.

SQLite (``sqlite:///./bank.db``) by default; ``--store-url`` or ``TIDINGS_STORE_URL`` picks
another store, e.g. ``postgresql://postgres@127.0.0.1:5432/test`` or ``memory://``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime

from examples.bank.domain import (
    Account,
    AccountOpened,
    Deposited,
    TransferReceived,
    TransferSent,
    Withdrawn,
    cents,
)
from examples.bank.service import Bank
from rich.console import Console
from rich.table import Table

from tidings.errors import DomainError, TidingsError
from tidings.message import encode_json, uuid7
from tidings.store import EventStore, NewEvent

DEFAULT_URL = "sqlite:///./bank.db"


async def _release_1_deposit(store: EventStore, account_id: str, amount: str) -> None:
    """Append a ``bank.Deposited`` exactly as release 1.0 stored it: data version 1, cents
    as a string. Reading it runs ``deposited_v1_to_v2`` (see ``domain.py``)."""
    stream = Account.stream_name(account_id)
    info = await store.stream_info(stream)
    assert info is not None
    legacy = NewEvent(
        id=uuid7(), type="bank.Deposited", data=encode_json({"amount": amount}), dataversion=1
    )
    await store.append(stream, [legacy], info.version)


def _short(account_id: str) -> str:
    return account_id[-12:]


def _describe(event: object) -> str:
    match event:
        case AccountOpened(owner=owner):
            return f"opened for {owner}"
        case Deposited(amount_cents=amount):
            return f"deposit +{cents(amount)}"
        case Withdrawn(amount_cents=amount):
            return f"withdrawal -{cents(amount)}"
        case TransferSent(to_account=to, amount_cents=amount):
            return f"transfer -{cents(amount)} to …{_short(to)}"
        case TransferReceived(from_account=source, amount_cents=amount):
            return f"transfer +{cents(amount)} from …{_short(source)}"
    return repr(event)


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


async def run(url: str, console: Console) -> dict[str, int]:
    """Play the scenario on the store at ``url``; returns the final balances by owner."""
    async with EventStore(url) as store:
        bank = Bank(store, snapshot_every=5)
        alice = await bank.open_account("Alice")
        bob = await bank.open_account("Bob")
        console.print(f"opened accounts: Alice …{_short(alice)}, Bob …{_short(bob)}")

        await bank.deposit(alice, 100_00)
        await _release_1_deposit(store, alice, "2500")
        console.print(
            "stored a v1 bank.Deposited {'amount': '2500'} as release 1.0 did; "
            "the upcaster reads it as Deposited(amount_cents=2500)"
        )
        await asyncio.sleep(0.05)
        checkpoint = datetime.now(UTC)
        await asyncio.sleep(0.05)

        await bank.withdraw(alice, 30_00)
        try:
            await bank.withdraw(alice, 1_000_00)
        except DomainError as exc:
            console.print(f"[yellow]refused:[/] {exc} (nothing recorded)")
        transfer = await bank.transfer(alice, bob, 50_00)
        console.print(f"transfer …{transfer[-8:]}: Alice -> Bob 50.00")
        try:
            await bank.transfer(bob, alice, 500_00)
        except DomainError as exc:
            console.print(f"[yellow]refused:[/] {exc} (nothing recorded)")
        settled = await bank.settle_transfers()
        console.print(f"transfers in flight settled at start-up check: {settled}")

        table = Table(title=f"Audit trail of Alice ({Account.stream_name(alice)})")
        for column in ("ver", "pos", "recorded (UTC)", "event", "stored as", "correlation"):
            table.add_column(column)
        for entry in await bank.statement(alice):
            table.add_row(
                str(entry.version),
                str(entry.position),
                _at(entry.recorded_at),
                _describe(entry.event),
                f"{entry.type} v{entry.record.dataversion}",
                "…" + corr[-8:] if (corr := entry.metadata.get("correlationid")) else "",
            )
        console.print(table)

        balances = {"Alice": await bank.balance(alice), "Bob": await bank.balance(bob)}
        then = await bank.balance(alice, as_of=checkpoint)
        console.print(f"Alice balance now: {cents(balances['Alice'])}")
        console.print(f"Bob balance now: {cents(balances['Bob'])}")
        console.print(f"Alice balance as of {checkpoint.isoformat()}: {cents(then)}")
        balances["Alice as of checkpoint"] = then
        return balances


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.bank", description=__doc__)
    parser.add_argument(
        "--store-url",
        default=os.environ.get("TIDINGS_STORE_URL", DEFAULT_URL),
        help=f"event store URL (env TIDINGS_STORE_URL; default {DEFAULT_URL})",
    )
    args = parser.parse_args(argv)
    console = Console()
    try:
        asyncio.run(run(args.store_url, console))
    except TidingsError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
