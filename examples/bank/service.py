"""The bank's application service: commands in, events stored, queries out.

Transfers touch two aggregates. The event store appends atomically to one stream only, and
we keep it that way (one aggregate = one consistency boundary), so a transfer is two
appends tied by a ``transfer_id`` that is also the ``correlationid`` in both events'
metadata:

1. ``TransferSent`` on the source: the funds rule is checked here, so an overdraft records
   nothing anywhere.
2. ``TransferReceived`` on the target, retried on concurrency conflicts. Receiving is
   idempotent (the account remembers transfer ids), so retrying it is always safe.

If the process dies between 1 and 2, the money is "in flight": :meth:`Bank.settle_transfers`
finds every ``TransferSent`` without its ``TransferReceived`` in the global log and
completes it. Run it at start-up (or from a projection) and the books always balance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from examples.bank.domain import Account, TransferReceived, TransferSent

from tidings.errors import WrongExpectedVersion
from tidings.eventsourcing import HistoryEntry, Repository
from tidings.message import uuid7
from tidings.store import EventStore

__all__ = ["Bank"]

_RETRIES = 5


class Bank:
    def __init__(self, store: EventStore, *, snapshot_every: int | None = 50) -> None:
        self.store = store
        self.accounts = Repository(store, Account, snapshot_every=snapshot_every)

    async def open_account(self, owner: str, *, account_id: str | None = None) -> str:
        account = Account.open(account_id or uuid7(), owner)
        await self.accounts.save(account)
        return account.id

    async def deposit(self, account_id: str, amount_cents: int) -> None:
        await self._execute(account_id, lambda a: a.deposit(amount_cents))

    async def withdraw(self, account_id: str, amount_cents: int) -> None:
        await self._execute(account_id, lambda a: a.withdraw(amount_cents))

    async def transfer(self, source: str, target: str, amount_cents: int) -> str:
        """Move money; returns the transfer id. Raises ``InsufficientFunds`` (nothing
        recorded) or ``StreamNotFound`` when either account does not exist."""
        await self.accounts.load(target)  # fail before taking the money if there is no target
        transfer_id = uuid7()
        await self._execute(
            source,
            lambda a: a.send_transfer(transfer_id, target, amount_cents),
            transfer_id=transfer_id,
        )
        await self._execute(
            target,
            lambda a: a.receive_transfer(transfer_id, source, amount_cents),
            transfer_id=transfer_id,
        )
        return transfer_id

    async def settle_transfers(self) -> int:
        """Complete transfers whose second half is missing; returns how many were settled."""
        sent: dict[str, tuple[str, TransferSent]] = {}
        received: set[str] = set()
        position = 0
        while batch := await self.store.read_all(position, 1000, category=Account.category):
            for record in batch:
                if record.type == "bank.TransferSent":
                    event = self.store.decode(record)
                    assert isinstance(event, TransferSent)
                    source = record.stream.removeprefix(f"{Account.category}-")
                    sent[event.transfer_id] = (source, event)
                elif record.type == "bank.TransferReceived":
                    got = self.store.decode(record)
                    assert isinstance(got, TransferReceived)
                    received.add(got.transfer_id)
            position = batch[-1].position + 1
        missing = [(tid, item) for tid, item in sent.items() if tid not in received]
        for transfer_id, (source, event) in missing:
            await self._execute(
                event.to_account,
                lambda a, t=transfer_id, s=source, e=event: a.receive_transfer(
                    t, s, e.amount_cents
                ),
                transfer_id=transfer_id,
            )
        return len(missing)

    async def balance(self, account_id: str, *, as_of: datetime | float | None = None) -> int:
        """Balance in cents, now or as of a past time."""
        account = await self.accounts.load(account_id, as_of=as_of)
        return account.balance_cents

    async def statement(self, account_id: str) -> list[HistoryEntry]:
        """The account's audit trail: every event with its position, time and metadata."""
        return await self.accounts.history(account_id)

    async def _execute(
        self,
        account_id: str,
        command: Callable[[Account], None],
        *,
        transfer_id: str | None = None,
    ) -> None:
        """Load, run the command, save; on a concurrent write, reload and run it again."""
        metadata = {"correlationid": transfer_id} if transfer_id else None
        for attempt in range(_RETRIES):
            account = await self.accounts.load(account_id)
            command(account)
            try:
                await self.accounts.save(account, metadata=metadata)
                return
            except WrongExpectedVersion:
                if attempt == _RETRIES - 1:
                    raise
