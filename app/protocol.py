"""What a browser may send over the dashboard's socket: one declaration per message type.

docs/protocol.md describes the same table in words ("Browser to server"); tests/unit/test_protocol.py
reads it there and compares it with ``COMMANDS`` field by field, so the two cannot drift. ``validate``
checks a decoded message against its declaration before any handler runs: JSON types are never
coerced (a boolean is not a number, ``"5"`` is not 5), numbers and strings have ranges, and a field not
declared is refused.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The protocol's version, sent in every snapshot. 2: messages are validated strictly, and the close
#: code 4001 (signed out). 3: whole-number fields refuse fractions.
VERSION = 3
#: The socket closes with this code when its session ends (logout, password change, deactivation,
#: staff status taken away): logging in again helps.
CLOSE_SIGNED_OUT = 4001
#: The socket closes with this code when the user may not view the dashboard at all.
CLOSE_FORBIDDEN = 4003
#: Fields every message may carry besides its own: ``type`` names it, ``id`` (any JSON) is echoed back.
ENVELOPE = ("type", "id")

MAX_ID = 2**63 - 1  # the largest primary key a 64-bit column holds
MAX_SECONDS = 10 * 366 * 24 * 3600  # ten years: beyond any schedule, far below datetime's limits
MAX_ARGS = 16 * 1024  # characters of JSON in a created task's arguments
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds

KINDS = ("id", "integer", "number", "string", "boolean", "object")


class Refused(Exception):
    """A message or command that is not carried out; ``field`` names what is wrong, when one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Field:
    """One field of a message: its JSON kind (one of KINDS) and its limits."""

    kind: str
    required: bool = False
    minimum: float | None = None  # numbers: the smallest value allowed
    above: float | None = None  # numbers: values must be greater than this
    maximum: float | None = None  # numbers: the largest value; strings and objects: characters
    min_length: int = 0  # strings

    def limits(self) -> str:
        """The limits in words, as docs/protocol.md's table gives them."""
        if self.kind == "id":
            return f"1 to {MAX_ID}"
        if self.kind in ("integer", "number"):
            low = f"above {_number(self.above)}," if self.above is not None else f"{_number(self.minimum)}"
            return f"{low} {'at most' if self.above is not None else 'to'} {_number(self.maximum)}"
        if self.kind == "string":
            return f"{self.min_length} to {self.maximum} characters"
        if self.kind == "object":
            return f"at most {self.maximum} characters of compact JSON"
        return ""

    def expects(self) -> str:
        return {
            "id": f"an id (a whole number from {self.limits()})",
            "integer": f"a whole number (JSON, not a string or a fraction), {self.limits()}",
            "number": f"a number (JSON, not a string), {self.limits()}",
            "string": f"a string of {self.limits()}",
            "boolean": "true or false",
            "object": f"a JSON object of {self.limits()}",
        }[self.kind]

    def accepts(self, value: Any) -> bool:
        if self.kind == "boolean":
            return isinstance(value, bool)
        if isinstance(value, bool):  # JSON's true is no number, though Python's True is an int
            return False
        if self.kind == "id":
            return isinstance(value, int) and 1 <= value <= MAX_ID
        if self.kind == "integer":
            return isinstance(value, int) and self._in_range(value)
        if self.kind == "number":
            return isinstance(value, int | float) and self._in_range(value)
        if self.kind == "string":
            return isinstance(value, str) and self.min_length <= len(value) <= self.maximum
        return isinstance(value, dict) and len(json.dumps(value, separators=(",", ":"))) <= self.maximum

    def _in_range(self, value: float) -> bool:
        above_low = value > self.above if self.above is not None else value >= self.minimum
        return above_low and value <= self.maximum  # false for 1e400 (read as inf) and NaN too


@dataclass(frozen=True)
class Command:
    permission: str
    fields: dict[str, Field] = field(default_factory=dict)


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


#: Integers a task field may hold (a 32-bit column); the model's own checks narrow them further.
MAX_INTEGER = 2**31 - 1
#: Fields whose protocol limits say more than their column does.
NARROWER = {
    "func": Field("string", required=True, min_length=1, maximum=255),
    "name": Field("string", min_length=1, maximum=200),
    "kill_time": Field("number", above=0, maximum=MAX_SECONDS),
}


def task_definition_fields() -> dict[str, Field]:
    """``create``'s fields: a task's definition as the model has it (``Task.definition_fields()``), less
    the fields only a permission may set (``task.PROTECTED_FIELDS``). Times are epoch seconds."""
    from .task import PROTECTED_FIELDS, Task

    names = [name for name in Task.definition_fields() if name not in PROTECTED_FIELDS]
    return {name: NARROWER.get(name) or _field_for(Task._meta.get_field(name)) for name in names}


def task_values(fields: dict[str, Any]) -> dict[str, Any]:
    """A validated ``create``'s fields as the model takes them: epoch seconds become aware datetimes."""
    from .task import Task

    def value(name: str, given: Any) -> Any:
        if Task._meta.get_field(name).get_internal_type() == "DateTimeField":
            return datetime.fromtimestamp(given, tz=UTC)
        return given

    return {name: value(name, given) for name, given in fields.items()}


def _field_for(column: Any) -> Field:
    kind = column.get_internal_type()
    if kind == "BooleanField":
        return Field("boolean")
    if kind == "JSONField":
        return Field("object", maximum=MAX_ARGS)
    if kind in ("FloatField", "DateTimeField"):
        return SECONDS if kind == "FloatField" else Field("number", minimum=0, maximum=MAX_EPOCH)
    if kind.endswith("IntegerField"):
        low = 0 if kind.startswith("Positive") else -MAX_INTEGER - 1
        return Field("integer", minimum=low, maximum=MAX_INTEGER)
    return Field("string", maximum=column.max_length)


VIEW, CHANGE, ADD = "conductor.view_task", "conductor.change_task", "conductor.add_task"
TASK = {"task": Field("id", required=True)}
RUN = {"run": Field("id", required=True)}
SECONDS = Field("number", minimum=0, maximum=MAX_SECONDS)

COMMANDS: dict[str, Command] = {
    "snapshot": Command(VIEW),
    "ping": Command(VIEW),
    "stack": Command(VIEW, RUN),
    "run_now": Command(CHANGE, TASK),
    "stop_loop": Command(CHANGE, TASK),
    "pause": Command(CHANGE, TASK),
    "resume": Command(CHANGE, TASK),
    "cancel": Command(CHANGE, RUN),
    "create": Command(ADD, task_definition_fields()),
}


def command_of(content: Any) -> str:
    """The message's type, when it is a JSON object naming a known command; else Refused."""
    if not isinstance(content, dict):
        raise Refused('A message must be a JSON object with a "type".')
    kind = content.get("type")
    if not isinstance(kind, str) or kind not in COMMANDS:
        known = ", ".join(sorted(COMMANDS))
        raise Refused(f"Unknown type {kind!r}; known types: {known}.", "type")
    return kind


def validate(content: dict) -> None:
    """Refused, naming the first field that is unknown, missing or not what its declaration expects."""
    kind = content["type"]
    declared = COMMANDS[kind].fields
    for name in content:
        if name not in declared and name not in ENVELOPE:
            takes = ", ".join(declared) or "no fields"
            raise Refused(f"{name}: {kind} takes no field {name!r} (it takes {takes}).", name)
    for name, declaration in declared.items():
        if name not in content:
            if declaration.required:
                raise Refused(f"{name}: required for {kind}: {declaration.expects()}.", name)
        elif not declaration.accepts(content[name]):
            raise Refused(f"{name}: expects {declaration.expects()}; got {_shown(content[name])}.", name)


def _shown(value: Any) -> str:
    """A refused value as the browser sent it (JSON), cut short."""
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
