"""Tests for app.registry: registering, looking up and discovering task functions."""

import importlib
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from app import registry
from app.registry import UnknownFunction
from tests import functions


def module_level(x: int, *, y: int = 0) -> int:
    return x + y


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made by a test are forgotten after it."""
    monkeypatch.setattr(registry, "_functions", dict(registry._functions))


def test_register_returns_the_function_unchanged(isolated_registry):
    assert registry.register(module_level) is module_level


def test_registered_function_is_found_by_its_dotted_path(isolated_registry):
    registry.register(module_level)

    path = "tests.unit.test_registry.module_level"
    assert registry.dotted_path(module_level) == path
    assert registry.get(path) is module_level
    assert path in registry.names()


def test_registration_is_forgotten_outside_the_isolated_registry():
    with pytest.raises(UnknownFunction):
        registry.get("tests.unit.test_registry.module_level")


def test_test_functions_are_registered_through_task_modules():
    assert registry.get("tests.functions.add") is functions.add
    assert {"tests.functions.add", "tests.functions.say"} <= set(registry.names())


def test_installed_apps_tasks_modules_are_autodiscovered():
    assert "server.demo.tasks.noop" in registry.names()


def test_names_are_sorted():
    assert registry.names() == sorted(registry.names())


def test_get_of_an_unknown_path_says_how_to_register():
    with pytest.raises(UnknownFunction) as caught:
        registry.get("os.system")

    message = str(caught.value)
    assert "'os.system' is not a registered task function" in message
    assert "(from app import register)" in message
    assert "TASK_MODULES" in message


def test_unknown_function_is_a_lookup_error():
    assert issubclass(UnknownFunction, LookupError)


def test_registering_a_function_defined_inside_a_function_is_refused(isolated_registry):
    def outer():
        return lambda: None

    with pytest.raises(TypeError, match="defined inside a function"):
        registry.register(outer())
    with pytest.raises(TypeError, match="outer"):
        registry.register(outer)
    assert not [name for name in registry.names() if "<locals>" in name]


def test_registering_something_not_callable_is_refused(isolated_registry):
    with pytest.raises(TypeError, match="needs a function, got str"):
        registry.register("tests.functions.add")


@pytest.mark.parametrize(
    "kwargs",
    [{"a": 1}, {"a": 1, "b": 2}, {"b": 2, "a": 1}],
)
def test_signature_errors_is_none_when_the_arguments_fit(kwargs):
    assert registry.signature_errors("tests.functions.add", kwargs) is None


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "missing a required argument: 'a'"),
        ({"b": 2}, "missing a required argument: 'a'"),
        ({"a": 1, "c": 3}, "got an unexpected keyword argument 'c'"),
    ],
)
def test_signature_errors_says_why_the_arguments_do_not_fit(kwargs, problem):
    assert registry.signature_errors("tests.functions.add", kwargs) == problem


def test_signature_errors_of_keyword_only_arguments(isolated_registry):
    registry.register(module_level)
    path = registry.dotted_path(module_level)

    assert registry.signature_errors(path, {"x": 1, "y": 2}) is None
    assert "missing a required argument: 'x'" in registry.signature_errors(path, {"y": 2})


def test_signature_errors_of_an_unknown_path_raises_unknown_function():
    with pytest.raises(UnknownFunction):
        registry.signature_errors("tests.functions.nope", {})


# --- autodiscover --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["conductor_no_such_module", "tests.no_such_module", "conductor_no_such_package.jobs"]
)
def test_autodiscover_of_a_missing_task_module_gives_a_hint(module):
    with (
        override_settings(CONDUCTOR={"TASK_MODULES": [module]}),
        pytest.raises(ImproperlyConfigured) as caught,
    ):
        registry.autodiscover()

    message = str(caught.value)
    assert f"names {module!r}, which cannot be imported" in message
    assert "CONDUCTOR['TASK_MODULES']" in message
    assert "Fix the name or put its package on the Python path" in message


@pytest.fixture
def probe_modules(tmp_path, monkeypatch):
    """Write modules (and their packages) into a directory on sys.path; unimported afterwards."""
    monkeypatch.syspath_prepend(tmp_path)
    written: list[str] = []

    def write(name: str, source: str) -> None:
        *packages, module = name.split(".")
        directory = tmp_path
        for depth, package in enumerate(packages, start=1):
            directory = directory / package
            directory.mkdir(exist_ok=True)
            (directory / "__init__.py").touch()
            written.append(".".join(packages[:depth]))
        (directory / f"{module}.py").write_text(source)
        written.append(name)
        importlib.invalidate_caches()

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_autodiscover_imports_the_configured_modules(probe_modules, isolated_registry):
    probe_modules(
        "conductor_probe_jobs",
        "from app.registry import register\n\n\n@register\ndef probe():\n    return 1\n",
    )

    with override_settings(CONDUCTOR={"TASK_MODULES": ["conductor_probe_jobs"]}):
        registry.autodiscover()

    assert registry.get("conductor_probe_jobs.probe")() == 1


def test_autodiscover_reraises_a_missing_import_inside_a_task_module(probe_modules):
    probe_modules("conductor_probe_broken", "import conductor_missing_dependency\n")

    with (
        override_settings(CONDUCTOR={"TASK_MODULES": ["conductor_probe_broken"]}),
        pytest.raises(ModuleNotFoundError) as caught,
    ):
        registry.autodiscover()

    assert not isinstance(caught.value, ImproperlyConfigured)
    assert caught.value.name == "conductor_missing_dependency"


def test_autodiscover_reraises_a_missing_import_whose_name_prefixes_the_module(probe_modules):
    probe_modules("conductor_probe_tasks", "import conductor_probe\n")

    with (
        override_settings(CONDUCTOR={"TASK_MODULES": ["conductor_probe_tasks"]}),
        pytest.raises(ModuleNotFoundError) as caught,
    ):
        registry.autodiscover()

    assert not isinstance(caught.value, ImproperlyConfigured)
    assert caught.value.name == "conductor_probe"


def test_autodiscover_reraises_a_missing_sibling_whose_name_prefixes_the_module(probe_modules):
    probe_modules("conductor_probe_pkg.jobs", "import conductor_probe_pkg.job\n")

    with (
        override_settings(CONDUCTOR={"TASK_MODULES": ["conductor_probe_pkg.jobs"]}),
        pytest.raises(ModuleNotFoundError) as caught,
    ):
        registry.autodiscover()

    assert not isinstance(caught.value, ImproperlyConfigured)
    assert caught.value.name == "conductor_probe_pkg.job"


def test_autodiscover_of_a_missing_module_in_an_existing_package_gives_a_hint(probe_modules):
    probe_modules("conductor_probe_pkg2.other", "")

    with (
        override_settings(CONDUCTOR={"TASK_MODULES": ["conductor_probe_pkg2.jobs"]}),
        pytest.raises(ImproperlyConfigured, match=r"names 'conductor_probe_pkg2\.jobs', which cannot"),
    ):
        registry.autodiscover()


def test_autodiscover_leaves_a_malformed_task_modules_setting_to_the_checks():
    with override_settings(CONDUCTOR={"TASK_MODULES": "tests.functions"}):
        registry.autodiscover()  # no error here: checks.py reports conductor.E004


def test_conductor_settings_come_from_the_environment_where_settings_leave_them_out(monkeypatch):
    from app import conf

    monkeypatch.setenv("CONDUCTOR_THREADS", "3")
    monkeypatch.setenv("CONDUCTOR_POLL", "0.5")
    monkeypatch.setenv("CONDUCTOR_TASK_MODULES", "a.jobs, b.jobs")
    with override_settings(CONDUCTOR={"THREADS": 5}):
        current = conf.get()
        assert (current.THREADS, current.POLL, current.TASK_MODULES) == (5, 0.5, ["a.jobs", "b.jobs"])


def test_a_malformed_number_in_the_environment_is_reported_by_the_checks(monkeypatch):
    from app.checks import check_settings

    monkeypatch.setenv("CONDUCTOR_THREADS", "eight")
    with override_settings(CONDUCTOR={}):
        [error] = check_settings()
    assert error.id == "conductor.E003"
    assert "'eight'" in error.msg
