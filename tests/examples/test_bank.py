"""The bank example on memory and SQLite, through its public API and its command line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from examples.bank.__main__ import main
from examples.bank.domain import (
    Account,
    Deposited,
    InsufficientFunds,
    InvalidAmount,
    SameAccount,
    TransferReceived,
    TransferSent,
)
from examples.bank.service import Bank

from tidings.errors import StreamNotFound
from tidings.message import encode_json, uuid7
from tidings.store import EventStore, NewEvent


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bank.db'}"


@pytest.fixture
async def bank(url: str) -> AsyncIterator[Bank]:
    async with EventStore(url) as store:
        yield Bank(store, snapshot_every=3)


async def test_bank_deposit_withdraw_balance(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    await bank.deposit(alice, 100_00)
    await bank.withdraw(alice, 30_00)
    assert await bank.balance(alice) == 70_00


async def test_bank_insufficient_funds_records_nothing(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    await bank.deposit(alice, 10_00)
    before = await bank.store.stream_info(Account.stream_name(alice))
    with pytest.raises(InsufficientFunds) as info:
        await bank.withdraw(alice, 10_01)
    assert info.value.balance_cents == 10_00
    with pytest.raises(InvalidAmount):
        await bank.deposit(alice, 0)
    assert await bank.store.stream_info(Account.stream_name(alice)) == before
    assert await bank.balance(alice) == 10_00


async def test_bank_transfer_moves_money_with_a_correlation_id(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    bob = await bank.open_account("Bob")
    await bank.deposit(alice, 80_00)
    transfer_id = await bank.transfer(alice, bob, 50_00)
    assert await bank.balance(alice) == 30_00
    assert await bank.balance(bob) == 50_00
    sent = (await bank.statement(alice))[-1]
    received = (await bank.statement(bob))[-1]
    assert sent.event == TransferSent(transfer_id=transfer_id, to_account=bob, amount_cents=50_00)
    assert received.event == TransferReceived(
        transfer_id=transfer_id, from_account=alice, amount_cents=50_00
    )
    assert sent.metadata["correlationid"] == received.metadata["correlationid"] == transfer_id
    assert sent.position < received.position


async def test_bank_refused_transfers_record_nothing(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    bob = await bank.open_account("Bob")
    await bank.deposit(alice, 5_00)
    head = await bank.store.head()
    with pytest.raises(InsufficientFunds):
        await bank.transfer(alice, bob, 6_00)
    with pytest.raises(SameAccount):
        await bank.transfer(alice, alice, 1_00)
    with pytest.raises(StreamNotFound):
        await bank.transfer(alice, "no-such-account", 1_00)
    assert await bank.store.head() == head


async def test_bank_settle_completes_a_half_done_transfer(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    bob = await bank.open_account("Bob")
    await bank.deposit(alice, 20_00)
    # The process died after the first half of a transfer: only TransferSent is stored.
    source = await bank.accounts.load(alice)
    source.send_transfer("t-1", bob, 15_00)
    await bank.accounts.save(source, metadata={"correlationid": "t-1"})
    assert await bank.balance(bob) == 0
    assert await bank.settle_transfers() == 1
    assert await bank.balance(bob) == 15_00
    assert await bank.settle_transfers() == 0
    assert (await bank.statement(bob))[-1].metadata["correlationid"] == "t-1"


async def test_bank_concurrent_withdrawals_never_overdraw(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    await bank.deposit(alice, 100_00)
    results = await asyncio.gather(
        *(bank.withdraw(alice, 40_00) for _ in range(3)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(refused) == 1
    assert all(r is None for r in results if r not in refused)
    assert await bank.balance(alice) == 20_00


async def test_bank_balance_as_of_a_past_time(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    await bank.deposit(alice, 10_00)
    await asyncio.sleep(0.02)  # separates commit times; nothing is asserted about timing
    history = await bank.statement(alice)
    moment = history[-1].recorded_at
    await asyncio.sleep(0.02)
    for _ in range(4):  # enough events for snapshots (every 3) past the moment
        await bank.deposit(alice, 1_00)
    assert await bank.balance(alice, as_of=moment) == 10_00
    assert await bank.balance(alice) == 14_00


async def test_bank_reads_release_1_deposits_through_the_upcaster(bank: Bank) -> None:
    alice = await bank.open_account("Alice")
    stream = Account.stream_name(alice)
    old = NewEvent(
        id=uuid7(), type="bank.Deposited", data=encode_json({"amount": "2500"}), dataversion=1
    )
    await bank.store.append(stream, [old], 0)
    assert await bank.balance(alice) == 25_00
    entry = (await bank.statement(alice))[-1]
    assert entry.event == Deposited(amount_cents=2500)
    assert entry.record.dataversion == 1


def test_bank_main_runs_the_scenario(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store-url", url]) == 0
    out = capsys.readouterr().out
    assert "Alice balance now: 45.00" in out
    assert "Bob balance now: 50.00" in out
    assert "Alice balance as of" in out
    assert out.rstrip().endswith("125.00")
    assert "refused:" in out
    assert "Audit trail of Alice" in out


def test_bank_main_bad_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store-url", "nosuch://"]) == 2
    assert "nosuch" in capsys.readouterr().out
