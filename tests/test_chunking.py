"""The engine reads a prompt's end in llama-server's pieces (docs/api.md, Serving: many requests at once)."""
from __future__ import annotations

from server.engine.chunking import prompt_take


def test_the_last_four_tokens_are_read_in_a_step_of_their_own():
    assert prompt_take(6, 512, 512) == 2
    assert prompt_take(4, 512, 512) == 4
    assert prompt_take(3, 512, 512) == 3


def test_a_long_prompt_stops_a_batch_before_its_end_then_four_before():
    taken, remaining = [], 1300
    while remaining:
        take = prompt_take(remaining, 512, 512)
        taken.append(take)
        remaining -= take
    assert taken == [512, 276, 508, 4]  # 1300 - 512 - 276 = 512 left; then 4 before the end


def test_the_room_left_in_the_step_still_bounds_it():
    assert prompt_take(1000, 100, 512) == 100
