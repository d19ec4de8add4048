"""Secret values are masked raw, URL-encoded and base64-encoded, also when a log chunk
boundary splits them."""

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from runs.tasktypes.local import TaskOutput
from runs.tasktypes.masking import MASK, Masker

SECRET = "s3cr3t/pa ss+word"


@pytest.fixture
def masker() -> Masker:
    m = Masker()
    m.add(SECRET)
    return m


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
    ],
)
def test_it_masks_each_encoding(masker: Masker, form: str) -> None:
    text = f"before {form} after"
    masked = masker.mask(text)
    assert form not in masked
    assert masked.startswith("before ")
    assert MASK in masked


def test_it_masks_a_whole_base64_value_padding_included(masker: Masker) -> None:
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert masker.mask(f"[{encoded}]") == f"[{MASK}]"


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:"])
def test_it_masks_a_secret_inside_a_longer_base64_value(masker: Masker, prefix: str) -> None:
    # e.g. an HTTP Basic header: base64("user:" + password)
    header = base64.b64encode(f"{prefix}{SECRET}".encode()).decode()
    masked = masker.mask(f"Authorization: Basic {header}")
    assert MASK in masked
    assert base64.b64encode(SECRET.encode()).decode()[:8] not in masked


def test_it_masks_keys_and_values_of_json(masker: Masker) -> None:
    value = {"token": SECRET, SECRET: [1, f"x{SECRET}y"], "n": 3}
    assert masker.mask_json(value) == {"token": MASK, MASK: [1, f"x{MASK}y"], "n": 3}


def test_it_leaves_short_values_alone() -> None:
    m = Masker()
    m.add("abc")
    assert m.mask("abc abc") == "abc abc"


def test_it_masks_a_secret_split_between_two_log_drains(masker: Masker) -> None:
    sink = TaskOutput(1_000_000, masker)
    line = f"password is {SECRET} ok\n".encode()
    cut = line.index(b"pa ss")
    sink.write(line[:cut])
    first = sink.drain()
    sink.write(line[cut:])
    rest = sink.drain(final=True)
    assert first + rest == f"password is {MASK} ok\n".encode()


def test_it_gives_everything_back_on_the_final_drain(masker: Masker) -> None:
    sink = TaskOutput(1_000_000, masker)
    sink.write(b"hello world, nothing secret here")
    assert sink.drain() + sink.drain(final=True) == b"hello world, nothing secret here"


def test_it_masks_a_numeric_secret_in_a_json_result() -> None:
    m = Masker()
    m.add("73195082")
    assert m.mask_json({"pin": 73195082, "other": 12, "ok": True}) == {
        "pin": MASK,
        "other": 12,
        "ok": True,
    }


def test_it_masks_the_json_escaped_form() -> None:
    m = Masker()
    m.add('pässwörd-"42"')
    logged = json.dumps({"password": 'pässwörd-"42"'})  # ASCII escapes and \"
    assert "p\\u00e4ssw" in logged
    assert m.mask(logged) == f'{{"password": "{MASK}"}}'


def test_it_masks_a_longer_secret_that_starts_with_a_shorter_one_across_drains() -> None:
    m = Masker()
    m.add("token-1234")
    m.add("token-1234-abcdefgh")
    sink = TaskOutput(1_000_000, m)
    sink.write(b"key=token-1234")
    first = sink.drain()
    sink.write(b"-abcdefgh done\n")
    assert first + sink.drain(final=True) == f"key={MASK} done\n".encode()


def test_it_masks_a_secret_that_the_log_cap_cuts() -> None:
    m = Masker()
    m.add("SUPERSECRET")
    sink = TaskOutput(20, m)
    sink.write(b"x" * 10 + b"SUPERSECRET and more\n")
    stored = sink.drain(final=True)
    assert b"SUPER" not in stored
    assert stored.startswith(b"x" * 10 + MASK.encode())
