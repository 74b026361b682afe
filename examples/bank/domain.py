"""The bank account domain: events, rules and the ``Account`` aggregate.

Money is an integer number of cents. Every rule is checked in a command method before
anything is recorded, so a broken rule (a :class:`~tidings.errors.DomainError`) leaves the
account and its stream unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.errors import DomainError
from tidings.eventsourcing import Aggregate, applies
from tidings.message import Event
from tidings.message.upcasting import upcaster

__all__ = [
    "Account",
    "AccountOpened",
    "AccountState",
    "Deposited",
    "InsufficientFunds",
    "InvalidAmount",
    "SameAccount",
    "TransferReceived",
    "TransferSent",
    "Withdrawn",
    "cents",
]


# -- events ---------------------------------------------------------------------------------


class AccountOpened(Event):
    __type__ = "bank.AccountOpened"
    owner: str


class Deposited(Event):
    """Money paid in. Version 2: ``amount_cents`` is an int (v1 stored ``amount``, a string)."""

    __type__ = "bank.Deposited"
    __version__ = 2
    amount_cents: int


class Withdrawn(Event):
    __type__ = "bank.Withdrawn"
    amount_cents: int


class TransferSent(Event):
    """Money left this account for ``to_account`` (first half of a transfer)."""

    __type__ = "bank.TransferSent"
    transfer_id: str
    to_account: str
    amount_cents: int


class TransferReceived(Event):
    """Money arrived from ``from_account`` (second half of the transfer ``transfer_id``)."""

    __type__ = "bank.TransferReceived"
    transfer_id: str
    from_account: str
    amount_cents: int


@upcaster("bank.Deposited", from_version=1)
def deposited_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Release 1.0 stored ``{"amount": "2500"}`` (cents as a string); v2 is an int."""
    return {"amount_cents": int(data["amount"])}


# -- errors ---------------------------------------------------------------------------------


class InvalidAmount(DomainError):
    def __init__(self, amount_cents: int) -> None:
        self.amount_cents = amount_cents
        super().__init__(f"amount must be a positive number of cents, got {amount_cents}")


class InsufficientFunds(DomainError):
    def __init__(self, account: str, balance_cents: int, amount_cents: int) -> None:
        self.account = account
        self.balance_cents = balance_cents
        self.amount_cents = amount_cents
        super().__init__(
            f"account {account} has {cents(balance_cents)}, cannot take {cents(amount_cents)}"
        )


class SameAccount(DomainError):
    def __init__(self, account: str) -> None:
        super().__init__(f"cannot transfer from account {account} to itself")


def cents(amount_cents: int) -> str:
    """``12345`` -> ``"123.45"``."""
    sign = "-" if amount_cents < 0 else ""
    whole, part = divmod(abs(amount_cents), 100)
    return f"{sign}{whole}.{part:02d}"


# -- the aggregate --------------------------------------------------------------------------


class AccountState(msgspec.Struct):
    owner: str = ""
    balance_cents: int = 0
    received_transfers: set[str] = msgspec.field(default_factory=set)
    """Transfer ids already credited: receiving is idempotent (a retried transfer is safe)."""


class Account(Aggregate[AccountState]):
    category = "account"

    def initial_state(self) -> AccountState:
        return AccountState()

    @property
    def balance_cents(self) -> int:
        return self.state.balance_cents

    # commands: check the rules, then record

    @classmethod
    def open(cls, id: str, owner: str) -> Account:
        if not owner.strip():
            raise DomainError("an account needs an owner")
        account = cls(id)
        account.record(AccountOpened(owner=owner))
        return account

    def deposit(self, amount_cents: int) -> None:
        _check_amount(amount_cents)
        self.record(Deposited(amount_cents=amount_cents))

    def withdraw(self, amount_cents: int) -> None:
        _check_amount(amount_cents)
        self._check_funds(amount_cents)
        self.record(Withdrawn(amount_cents=amount_cents))

    def send_transfer(self, transfer_id: str, to_account: str, amount_cents: int) -> None:
        _check_amount(amount_cents)
        if to_account == self.id:
            raise SameAccount(self.id)
        self._check_funds(amount_cents)
        self.record(
            TransferSent(transfer_id=transfer_id, to_account=to_account, amount_cents=amount_cents)
        )

    def receive_transfer(self, transfer_id: str, from_account: str, amount_cents: int) -> None:
        if transfer_id in self.state.received_transfers:
            return
        self.record(
            TransferReceived(
                transfer_id=transfer_id, from_account=from_account, amount_cents=amount_cents
            )
        )

    def _check_funds(self, amount_cents: int) -> None:
        if amount_cents > self.state.balance_cents:
            raise InsufficientFunds(self.id, self.state.balance_cents, amount_cents)

    # handlers: facts, no rules

    @applies(AccountOpened)
    def _opened(self, event: AccountOpened) -> None:
        self.state.owner = event.owner

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.state.balance_cents += event.amount_cents

    @applies(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.state.balance_cents -= event.amount_cents

    @applies(TransferSent)
    def _sent(self, event: TransferSent) -> None:
        self.state.balance_cents -= event.amount_cents

    @applies(TransferReceived)
    def _received(self, event: TransferReceived) -> None:
        self.state.balance_cents += event.amount_cents
        self.state.received_transfers.add(event.transfer_id)


def _check_amount(amount_cents: int) -> None:
    if amount_cents <= 0:
        raise InvalidAmount(amount_cents)
