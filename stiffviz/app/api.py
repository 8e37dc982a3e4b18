"""The API's argument count: a call with too many or too few values gets a message naming them.

Gradio drops the values beyond an endpoint's inputs without a word and answers too few with
its own error text about JavaScript functions. :class:`Blocks` checks the count first: an
endpoint of n inputs takes exactly n values (a ``gr.State`` input counts, as ``gradio_client``
sends a placeholder for it), and the message names the endpoint, the parameters it takes and
the ones missing or how many are extra. ``gradio_client`` fills parameters left out of a call
with the defaults that ``view_api()`` shows, so there a short call is a call with defaults.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


def parameter_names(block_fn: Any) -> list[str]:
    """The names of an event's inputs as the API shows them (``gr.State`` inputs left out)."""
    names = list(block_fn.input_parameter_names or [])
    names += [None] * (len(block_fn.inputs) - len(names))
    return [name or getattr(block, "label", None) or f"argument {i}"
            for i, (name, block) in enumerate(zip(names, block_fn.inputs)) if not block.stateful]  # fmt: skip


def count_message(block_fn: Any, given: int) -> str | None:
    """None if ``given`` values fit the event's inputs, else the message naming the problem."""
    expected = len(block_fn.inputs)
    if given == expected:
        return None
    names = parameter_names(block_fn)
    endpoint = block_fn.api_name or block_fn.name
    takes = f"{endpoint}: takes {len(names)} argument{'s' * (len(names) != 1)} ({', '.join(names) or 'none'})"
    if given > expected:
        return f"{takes}, got {given - expected} extra"
    stateful = sum(block.stateful for block in block_fn.inputs[:given])
    return f"{takes}; missing {', '.join(names[given - stateful:])}"


class Blocks(gr.Blocks):
    """``gr.Blocks`` whose events refuse a wrong number of values with :func:`count_message`."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        message = count_message(block_fn, len(inputs))
        if message:
            raise gr.Error(message, print_exception=False)
        super().validate_inputs(block_fn, inputs)
