"""Durations and sizes as people write them (core/units.py), and a slot's text out (server/engine/textout.py):
UTF-8 never split across events, stop strings held back until they can no longer match."""
from __future__ import annotations

import pytest

from core.units import parse_keep_alive, parse_size
from server.engine.textout import TextOut


@pytest.mark.parametrize("value, seconds", [
    ("5m", 300.0), ("1h30m", 5400.0), ("45s", 45.0), ("250ms", 0.25), ("1.5h", 5400.0), (" 10m ", 600.0),
    (0, 0.0), ("0", 0.0), (90, 90.0), ("90", 90.0), (2.5, 2.5),
])
def test_keep_alive_durations_and_seconds(value, seconds):
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", [-1, "-1", "-5m", -0.5])
def test_a_negative_keep_alive_is_forever(value):
    assert parse_keep_alive(value) is None


@pytest.mark.parametrize("value", [None, True, "", "5 minutes", "m5", "5x", "1h 30m", float("nan"), float("inf"),
                                   "nan", [], {}])
def test_a_keep_alive_that_is_no_duration_is_refused(value):
    with pytest.raises(ValueError, match="keep_alive"):
        parse_keep_alive(value)


@pytest.mark.parametrize("text, size", [
    ("8589934592", 8589934592), ("8GiB", 8 << 30), ("8G", 8 * 10**9), ("512MiB", 512 << 20), ("512 mb", 512 * 10**6),
    ("1.5GiB", 3 << 29), ("64KiB", 64 << 10), ("1T", 10**12), ("100B", 100),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "8 GiBs", "-1G", "8Q", "eight"])
def test_a_size_that_is_no_size_is_refused(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def pushed(out: TextOut, pieces: list[bytes]) -> list[str]:
    return [out.push(piece) for piece in pieces] + [out.flush()]


def test_a_character_split_across_pieces_comes_out_whole():
    snowman = "☃".encode()  # three bytes
    assert pushed(TextOut(), [b"a" + snowman[:1], snowman[1:2], snowman[2:] + b"b"]) == ["a", "", "☃b", ""]


def test_a_piece_ending_inside_a_character_is_finished_by_flush_as_a_replacement():
    assert pushed(TextOut(), [b"ok" + "é".encode()[:1]]) == ["ok", "\ufffd"]


def test_a_stop_string_split_across_pieces_is_held_back_and_cut():
    out = TextOut(["STOP"])
    assert pushed(out, [b"one ST", b"O", b"P two"]) == ["one ", "", "", ""]
    assert out.stopped and out.stop_word == "STOP"


def test_a_held_tail_that_stops_matching_is_released():
    out = TextOut(["STOP"])
    assert pushed(out, [b"one ST", b"ART"]) == ["one ", "START", ""]
    assert not out.stopped


def test_the_earliest_of_several_stop_strings_wins():
    out = TextOut(["world", "lo"])
    assert pushed(out, [b"hello world"]) == ["hel", ""]
    assert out.stop_word == "lo"


def test_text_after_a_stop_is_dropped():
    out = TextOut(["\n"])
    assert pushed(out, [b"line\nmore", b" and more"]) == ["line", "", ""]


def test_without_stop_strings_text_passes_at_once():
    assert pushed(TextOut([""]), [b"a", b"b"]) == ["a", "b", ""]
