"""The API's argument count and files: a call with too many or too few values, or a value that is
no file where a file is expected, gets a message naming them.

Gradio drops the values beyond an endpoint's inputs without a word and answers too few with
its own error text about JavaScript functions. :class:`Blocks` checks the count first: an
endpoint of n inputs takes exactly n values (a ``gr.State`` input counts, as ``gradio_client``
sends a placeholder for it), and the message names the endpoint, the parameters it takes and
the ones missing or how many are extra. ``gradio_client`` fills parameters left out of a call
with the defaults that ``view_api()`` shows, so there a short call is a call with defaults.
A plain HTTP call (``/gradio_api/call/NAME``) may leave the ``gr.State`` inputs out; Gradio
then inserts them, so its values count against the parameters the API shows.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pydantic

from .requests import shown


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
    missing = names[given:] if given < expected else []  # a short call comes without the hidden states
    if missing:
        return f"{takes}; missing {', '.join(missing)}"
    return f"{takes}, got {given - (expected if given > expected else len(names))} extra"


def file_message(block_fn: Any, inputs: list[Any]) -> str | None:
    """None if every file input holds nothing or a file reference, else the message naming the first
    that does not (Gradio would fail on it with a validation error that names no parameter)."""
    names = iter(parameter_names(block_fn))
    for block, value in zip(block_fn.inputs, inputs):
        if block.stateful:
            continue
        name = next(names)
        data_model = getattr(block, "data_model", None)
        if data_model is None or value is None:
            continue
        try:
            data_model.model_validate(value)
        except pydantic.ValidationError:
            return f"{name}: must be a file (gradio_client: handle_file(path)), got {shown(value)}"
    return None


class Blocks(gr.Blocks):
    """``gr.Blocks`` whose events refuse a wrong number of values (:func:`count_message`) and a value
    that is no file where a file is expected (:func:`file_message`), with messages naming them."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        message = count_message(block_fn, len(inputs)) or file_message(block_fn, inputs)
        if message:
            raise gr.Error(message, print_exception=False)
        super().validate_inputs(block_fn, inputs)
