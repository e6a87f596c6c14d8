"""app/protocol.py: the declared browser-to-server messages, the same as docs/protocol.md says, enforced.

The documentation is the one description of the schema: these tests read its two tables ("Browser to
server" and "Fields") and compare them with the code's declaration, so neither can change alone.
Messages through the real socket: tests/integration/test_consumers.py.
"""

import re
from pathlib import Path

import pytest

from app import protocol
from app.consumers import HANDLERS
from app.protocol import COMMANDS, MAX_ID, Field, Refused, validate

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def table_rows(heading: str) -> list[list[str]]:
    """The cells of the first table under ``heading``, backquotes removed, header and rule skipped."""
    section = DOC.split(f"\n{heading}\n", 1)[1]
    table = re.search(r"^\|.*?(?=\n[^|]|\Z)", section, re.M | re.S).group(0)
    rows = [line.strip().strip("|").split("|") for line in table.splitlines()[2:]]
    return [[cell.strip().replace("`", "") for cell in row] for row in rows]


def documented_commands() -> dict[str, str]:
    return {kind: permission for kind, permission, _effect in table_rows("## Browser to server")}


def documented_fields() -> dict[str, dict[str, tuple[str, bool, str]]]:
    fields: dict[str, dict[str, tuple[str, bool, str]]] = {kind: {} for kind in documented_commands()}
    for kind, name, field_kind, required, limits in table_rows("### Fields"):
        assert required in ("yes", "no"), f"{kind}.{name}: required is {required!r}"
        assert name not in fields[kind], f"{kind}.{name} is documented twice"
        fields[kind][name] = (field_kind, required == "yes", limits)
    return fields


def test_the_documented_commands_and_permissions_are_the_declared_ones():
    assert documented_commands() == {kind: command.permission for kind, command in COMMANDS.items()}


def test_the_documented_fields_are_the_declared_ones_field_by_field():
    declared = {
        kind: {name: (f.kind, f.required, f.limits()) for name, f in command.fields.items()}
        for kind, command in COMMANDS.items()
    }
    assert documented_fields() == declared


def test_the_documented_version_is_the_servers():
    assert f"# Dashboard WebSocket protocol, version {protocol.VERSION}\n" in DOC
    assert f"`protocol` ({protocol.VERSION})" in DOC
    assert f"- **{protocol.VERSION}**: " in DOC  # and what changed in it


def test_the_documented_close_codes_are_the_servers():
    assert f"| **{protocol.CLOSE_SIGNED_OUT}** | signed out" in DOC
    assert f"| **{protocol.CLOSE_FORBIDDEN}** | not allowed" in DOC
    script = (Path(__file__).resolve().parents[2] / "static" / "conductor" / "socket.js").read_text()
    assert f"export const CLOSE_SIGNED_OUT = {protocol.CLOSE_SIGNED_OUT};" in script
    assert f"export const CLOSE_FORBIDDEN = {protocol.CLOSE_FORBIDDEN};" in script


def test_every_declared_command_has_a_handler_and_no_handler_is_undeclared():
    assert set(HANDLERS) == set(COMMANDS)


def test_every_field_is_of_a_known_kind_with_its_limits():
    for command in COMMANDS.values():
        for declaration in command.fields.values():
            assert declaration.kind in protocol.KINDS
            if declaration.kind in ("integer", "number", "string", "object"):
                assert declaration.maximum is not None  # every size is bounded


# validate() ----------------------------------------------------------------------------------------


def refusal(content: dict) -> Refused:
    with pytest.raises(Refused) as refused:
        validate(content)
    return refused.value


def test_a_complete_valid_create_passes():
    validate({
        "type": "create", "id": [1, "any"], "func": "tests.functions.add", "args_in": {"a": 1}, "name": "n",
        "run_in": 0, "kill_time": 0.5, "loop": False, "interval": 60.0, "db_use": True,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("declaration", "inside", "outside"),
    [
        (Field("id"), [1, MAX_ID], [0, -1, MAX_ID + 1, 1.0, True]),
        (
            Field("number", minimum=0, maximum=10),
            [0, 0.0, 10, 5.5],
            [-0.001, 10.001, 2**1100, float("inf"), False, "5"],
        ),
        (Field("number", above=0, maximum=10), [0.001, 10], [0, -1, 11]),
        (Field("integer", minimum=-2, maximum=10), [-2, 0, 10], [1.5, 1.0, -3, 11, True, "5", None]),
        (Field("string", min_length=1, maximum=3), ["a", "abc", "ééé"], ["", "abcd", 1, None]),
        (Field("boolean"), [True, False], [0, 1, "true", None]),
        (Field("object", maximum=9), [{}, {"a": 123}], [{"a": 1234}, [], "{}", None]),  # {"a":123}: 9
    ],
)
def test_limits_are_inclusive_and_kinds_strict(declaration, inside, outside):
    assert [value for value in inside if not declaration.accepts(value)] == []
    assert [value for value in outside if declaration.accepts(value)] == []


def test_an_error_names_the_field_and_shows_what_was_sent_as_json():
    refused = refusal({"type": "create", "func": "tests.functions.add", "run_in": "5"})
    assert refused.field == "run_in"
    assert str(refused) == 'run_in: expects a number (JSON, not a string), 0 to 316224000; got "5".'
    refused = refusal({"type": "create", "func": "tests.functions.add", "loop": 1})
    assert str(refused) == "loop: expects true or false; got 1."


def test_a_long_value_is_shown_cut_short():
    refused = refusal({"type": "create", "func": "x" * 1000})
    assert str(refused) == f'func: expects a string of 1 to 255 characters; got "{"x" * 56}....'


def test_unknown_fields_are_named_with_what_the_command_takes():
    refused = refusal({"type": "create", "func": "tests.functions.add", "conn": "specific.abc"})
    assert refused.field == "conn"
    assert "create takes no field 'conn'" in str(refused)
    assert "name, func, args_in" in str(refused)


def test_a_missing_required_field_is_named():
    refused = refusal({"type": "cancel", "id": 1})
    assert (refused.field, str(refused)) == (
        "run",
        f"run: required for cancel: an id (a whole number from 1 to {MAX_ID}).",
    )


@pytest.mark.parametrize("content", [[], "ping", None, 3, {"type": ["ping"]}, {"type": "Ping"}, {}])
def test_anything_but_an_object_with_a_known_type_is_refused(content):
    with pytest.raises(Refused):
        protocol.command_of(content)
