"""README.md and docs/ list everything the code has: settings, environment variables, commands and their
options, system check ids, and every message type (docs/README.md says where each list must be).

Each list is collected from the code, so a new setting, command, check or message fails here, naming
what is missing from which page, until it is documented. Also: every shell block is marked runnable or
not (tests/acceptance/test_doc_commands.py runs the runnable ones).
"""

import ast
import re
from dataclasses import fields
from pathlib import Path

from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand

from app import access, events
from app.bridge import DASHBOARD_GROUP, RUNNERS_GROUP, runner_group
from app.conf import ENV_NUMBERS, ConductorSettings
from app.consumers import DashboardConsumer
from app.fanout import FEED_GROUP
from app.health import HEALTH_GROUP
from app.protocol import COMMANDS
from tests import docblocks

REPO_ROOT = docblocks.REPO_ROOT
APP = REPO_ROOT / "app"


def page(name: str) -> str:
    return (REPO_ROOT / name).read_text()


def section(name: str, heading: str) -> str:
    """The text under ``heading`` (a whole line, e.g. "## Settings") up to the next heading of its level
    or above."""
    text = page(name)
    level = heading.split(" ", 1)[0]
    assert f"\n{heading}\n" in text, f"{name} has no heading {heading!r}"
    after = text.split(f"\n{heading}\n", 1)[1]
    end = re.search(rf"^#{{1,{len(level)}}} ", after, re.M)
    return after[: end.start()] if end else after


def table_names(text: str) -> set[str]:
    """The backquoted names in the first cell of each table row."""
    names = set()
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def missing(wanted: set[str], found_in: str, where: str) -> str:
    gaps = sorted(name for name in wanted if f"`{name}`" not in found_in)
    return f"missing from {where}: {', '.join(gaps)}" if gaps else ""


def type_literals(*paths: Path) -> set[str]:
    """The values of ``"type": "<constant>"`` in the dict displays of these modules."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    constant = isinstance(value, ast.Constant) and isinstance(value.value, str)
                    if isinstance(key, ast.Constant) and key.value == "type" and constant:
                        found.add(value.value)
    return found


# Shell blocks --------------------------------------------------------------------------------------


def shell_blocks() -> list[docblocks.Block]:
    return [block for path in docblocks.pages() for block in docblocks.blocks(path) if block.is_shell]


def test_every_shell_block_is_marked_runnable_or_not_with_a_reason():
    blocks = shell_blocks()
    unmarked = [b.where for b in blocks if b.runnable == (b.marker("not-runnable") is not None)]
    no_reason = [b.where for b in blocks if b.marker("not-runnable") == ""]
    runnable = [b for b in blocks if b.runnable]
    not_runnable = [b for b in blocks if b.marker("not-runnable")]

    assert not unmarked, f"shell blocks marked neither runnable nor not-runnable (docs/README.md): {unmarked}"
    assert not no_reason, f"not-runnable blocks must say why: {no_reason}"
    assert len(runnable) + len(not_runnable) == len(blocks)
    assert len(runnable) >= 10  # the counts, so that a parser that finds nothing cannot pass


def test_runnable_blocks_use_only_known_options():
    for block in shell_blocks():
        if block.runnable:
            assert set(block.options) <= {"serves", "env", "installed"}, block.where
            if "env" in block.options:
                docblocks.marked_file(REPO_ROOT / block.page, block.options["env"])


def test_output_matching_takes_ellipses_for_any_text():
    assert docblocks.output_matches("Deleted ... runs\n", "Deleted 3 runs\n")
    assert not docblocks.output_matches("200\n", "200\n400\n")
    assert docblocks.output_contains("a ... up\n", "noise\na runner up\nmore\n")
    assert not docblocks.output_contains("b\na\n", "a\nb\n")


# Settings and environment variables ----------------------------------------------------------------


def test_every_conductor_setting_is_in_the_readmes_settings():
    wanted = {f.name for f in fields(ConductorSettings)}

    assert not missing(wanted, section("README.md", "## Settings"), "README.md, Settings")


def environment_variables() -> set[str]:
    """What the project's settings and the app read from the environment."""
    names = set()
    for path in [REPO_ROOT / "server" / "settings.py", *APP.glob("*.py")]:
        names.update(re.findall(r"environ(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    names.update(f"CONDUCTOR_{name}" for name in ENV_NUMBERS)  # conf.py reads these by a pattern
    names.discard("DJANGO_SETTINGS_MODULE")  # Django's own, passed on to child processes
    return names


def test_every_environment_variable_is_in_the_deploy_docs_environment_table():
    wanted = environment_variables()
    assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "CONDUCTOR_THREADS", "CONDUCTOR_LOG_LEVEL",
            "CONDUCTOR_METRICS_TOKEN"} <= wanted  # fmt: skip

    table = section("docs/deploy.md", "## The environment")
    assert not missing(wanted, table, "docs/deploy.md, The environment")


# Management commands ---------------------------------------------------------------------------------


def own_commands() -> dict[str, str]:
    return {name: app for name, app in get_commands().items() if app in ("app", "server.demo")}


def own_options(app: str, name: str) -> set[str]:
    base = {a.dest for a in BaseCommand().create_parser("manage.py", "base")._actions}
    parser = load_command_class(app, name).create_parser("manage.py", name)
    return {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest not in base}


def test_every_management_command_and_its_options_are_in_the_readme():
    commands = own_commands()
    assert {"runtasks", "prunetaskruns", "ensureadmin", "loaddemo"} <= set(commands)
    readme = page("README.md")

    gaps = [f"manage.py {name}" for name in commands if f"manage.py {name}" not in readme]
    gaps += [f"{name} {option}" for name, app in commands.items() for option in own_options(app, name)
             if f"`{option}" not in readme and f" {option}" not in readme]  # fmt: skip
    assert not gaps, f"missing from README.md: {', '.join(gaps)}"


# System checks ------------------------------------------------------------------------------------


def check_ids() -> set[str]:
    ids = set()
    for node in ast.walk(ast.parse((APP / "checks.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_error":
            ids.add(f"conductor.E{node.args[-1].value:03d}")
    for path in APP.glob("*.py"):
        ids.update(re.findall(r"id=\"(conductor\.[EW]\d{3})\"", path.read_text()))
    return ids


def test_every_system_check_id_is_in_the_install_docs_table_and_only_those():
    ids = check_ids()
    assert {"conductor.E001", "conductor.E010", "conductor.W003", "conductor.E101"} <= ids
    table = section("docs/install.md", "## What the checks tell you")

    assert not missing(ids, table, "docs/install.md, What the checks tell you")
    assert table_names(table) <= ids, f"documented but not in the code: {table_names(table) - ids}"


def changelog_check_ids() -> set[str]:
    """The ids CHANGELOG.md names, its ranges (`conductor.E001`-`E004`) spelled out."""
    text = page("CHANGELOG.md")
    ids = set(re.findall(r"conductor\.[EW]\d{3}", text))
    for kind, first, last in re.findall(r"`(?:conductor\.)?([EW])(\d{3})`-`\1(\d{3})`", text):
        ids.update(f"conductor.{kind}{n:03d}" for n in range(int(first), int(last) + 1))
    ids.update(f"conductor.{i}" for i in re.findall(r"`([EW]\d{3})`", text))
    return ids


def test_the_changelog_names_exactly_the_check_ids_the_code_has():
    assert changelog_check_ids() == check_ids()


def test_the_changelog_has_no_unreleased_section_above_the_released_version():
    from app import __version__

    versions = re.findall(r"^## \[([^\]]+)\]", page("CHANGELOG.md"), flags=re.M)
    assert versions[0] == __version__, versions


# Messages -----------------------------------------------------------------------------------------


def test_every_browser_command_is_in_the_protocol():
    assert not missing(set(COMMANDS), section("docs/protocol.md", "## Browser to server"), "protocol.md")


def server_messages() -> set[str]:
    return type_literals(APP / "consumers.py", APP / "snapshot.py", APP / "bridge.py") - {"conductor.events"}


def test_every_server_to_browser_message_is_in_the_protocol_and_only_those():
    sent = server_messages()
    assert {"snapshot", "events", "reply", "error", "stack", "task.result"} <= sent
    table = section("docs/protocol.md", "## Server to browser")

    assert not missing(sent, table, "docs/protocol.md, Server to browser")
    assert table_names(table) <= sent, f"documented but never sent: {table_names(table) - sent}"


def event_types() -> set[str]:
    return {v for k, v in vars(events).items() if k.isupper() and isinstance(v, str) and "." in v}


def test_every_event_type_is_in_the_protocols_events_and_only_those():
    kinds = event_types()
    assert {"runner.up", "runner.degraded", "task.changed", "run.log"} <= kinds
    table = section("docs/protocol.md", "## Events")
    documented = {name for row in table_names(table) for name in re.split(r",\s*", row)}

    assert not missing(kinds - {events.TASK_RESULT}, table, "docs/protocol.md, Events")
    assert f"`{events.TASK_RESULT}`" in section("docs/protocol.md", "## Server to browser")
    assert documented <= kinds, f"documented but never published: {documented - kinds}"


CHANNEL_SECTION = "## Between runners and web processes (the channel layer)"


def channel_messages() -> set[str]:
    modules = [APP / f"{name}.py" for name in ("actions", "bridge", "health")]
    sent = type_literals(*modules, *sorted((APP / "runner").glob("*.py")))
    return (sent - server_messages()) | {access.RECHECK} | {events.TASK_RESULT}


def test_every_channel_layer_message_and_group_is_in_the_protocol():
    messages = channel_messages()
    assert {"runner.command", "thread.stack", "command.failed", "conductor.events", "conductor.recheck",
            "task.result", "health.probe"} <= messages  # fmt: skip
    text = section("docs/protocol.md", CHANNEL_SECTION)
    groups = {DASHBOARD_GROUP, RUNNERS_GROUP, FEED_GROUP, HEALTH_GROUP}
    prefixes = {runner_group("w").rsplit(".", 1)[0], access.user_group("x/y").rsplit(".", 1)[0]}

    assert not missing(messages, text, f"docs/protocol.md, {CHANNEL_SECTION}")
    assert not missing(groups, text, f"docs/protocol.md, {CHANNEL_SECTION}")
    assert all(f"`{prefix}." in text for prefix in prefixes), prefixes


def test_sockets_handle_each_channel_message_meant_for_them_as_the_protocol_says():
    """A socket handles a message in the method named after its type, ``.`` as ``_``."""
    for kind in ("conductor.events", "task.result", "thread.stack", "command.failed", "conductor.recheck"):
        assert callable(getattr(DashboardConsumer, kind.replace(".", "_"), None)), kind
