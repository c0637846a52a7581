"""Firmware releases after TUF: threshold, revocation, rollback floor; verify names the check."""

from __future__ import annotations

import pytest

from glucoledger.crypto import generate
from glucoledger.errors import RejectedError
from glucoledger.node.devices import create_keyed_account, org_account, submit_one
from glucoledger.node.firmware import FirmwareError, publish, revoke, set_floor, verify_image
from glucoledger.node.world import World
from glucoledger.state.accounts_model import make_policy

IMG1, IMG2, IMG3 = b"firmware-1" * 100, b"firmware-2" * 100, b"firmware-3" * 100


def _check(world: World, image: bytes, version: str, installed: str | None = None) -> str:
    try:
        verify_image(world.node.state, image, "CGM-G7", version, installed)
    except FirmwareError as exc:
        return exc.check
    return "ok"


def test_release_needs_the_threshold_and_verify_names_each_check(world: World) -> None:
    node, keys = world.node, world.maker_keys
    with pytest.raises(RejectedError) as info:
        publish(node, world.maker, keys[:1], "CGM-G7", "1.0.0", IMG1)
    assert info.value.code == "insufficient_signatures"
    publish(node, world.maker, keys[:2], "CGM-G7", "1.0.0", IMG1)
    publish(node, world.maker, keys[1:], "CGM-G7", "2.0", IMG2)
    publish(node, world.maker, keys, "CGM-G7", "3.0.0", IMG3)
    with pytest.raises(RejectedError) as info:
        publish(node, world.maker, keys[:2], "CGM-G7", "2.0.0", IMG2)
    assert info.value.code == "exists"

    assert _check(world, IMG1, "1.0.0") == "ok"
    assert _check(world, IMG2, "2.0", installed="1.0.0") == "ok"
    assert _check(world, IMG1, "9.9") == "unknown_release"
    assert _check(world, IMG1 + b"x", "1.0.0") == "length"
    assert _check(world, IMG1[:-1] + b"X", "1.0.0") == "hash"
    assert _check(world, IMG1, "1.0.0", installed="2.0") == "not_newer"
    assert _check(world, IMG1, "1.0.0", installed="1.0") == "not_newer"
    assert _check(world, IMG1, "1.0.0", installed="x") == "bad_version"

    set_floor(node, world.maker, keys[:2], "CGM-G7", "2.0")
    assert _check(world, IMG1, "1.0.0") == "below_floor"
    with pytest.raises(RejectedError) as info:
        set_floor(node, world.maker, keys[:2], "CGM-G7", "1.5")
    assert info.value.code == "floor_lowered"

    revoke(node, world.maker, keys[:2], "CGM-G7", "2.0")
    assert _check(world, IMG2, "2.0") == "revoked"
    with pytest.raises(RejectedError) as info:
        revoke(node, world.maker, keys[:2], "CGM-G7", "2.0")
    assert info.value.code == "revoked"
    with pytest.raises(RejectedError) as info:
        revoke(node, world.maker, keys[:2], "CGM-G7", "7.0")
    assert info.value.code == "unknown_release"

    # Rotate out keys 0 and 1: releases they signed fall below the threshold; new ones verify.
    new = generate()
    policy = make_policy([(k.public, {"default": 1, "firmware": 1}) for k in (keys[2], new)],
                         {"default": 1, "firmware": 2, "cosigners": 2})
    submit_one(node, node.build("account.update", {"policy": policy}, world.maker, keys[:2]))
    set_floor(node, world.maker, [keys[2], new], "CGM-G7", "3.0.0")
    assert _check(world, IMG3, "3.0.0") == "threshold"
    publish(node, world.maker, [keys[2], new], "CGM-G7", "4.0", IMG1)
    assert _check(world, IMG1, "4.0", installed="3.0.0") == "ok"


def test_a_model_belongs_to_its_first_maker(world: World) -> None:
    publish(world.node, world.maker, world.maker_keys[:2], "CGM-G7", "1", IMG1)
    org, org_key = org_account(world.node)
    other_key = generate()
    other = create_keyed_account(world.node, "maker", [other_key], sponsor=(org, [org_key]))
    with pytest.raises(RejectedError) as info:
        publish(world.node, other, [other_key], "CGM-G7", "2", IMG2)
    assert info.value.code == "model_owned"
    patient = world.add_patient("p")
    with pytest.raises(RejectedError) as info:
        publish(world.node, patient.id, [patient.key], "Pen-1", "1", IMG1)
    assert info.value.code == "not_maker"
